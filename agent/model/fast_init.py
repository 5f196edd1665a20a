"""A faster `__init__` for the frozen dataclasses a cycle makes by the hundred thousand.

A frozen dataclass's generated `__init__` sets each field with `object.__setattr__`, a
function call found by name for every field: 4.7 us for CertInfo's 24 fields, more than
decoding its stored facts (issue 13: a steady cycle at 100,000 certificates builds about half
a million records). With slots, each field is a member descriptor of the class, and calling
its `__set__` directly does the same store without the lookup, in a third of the time. The
instances stay frozen: an assignment still goes through the dataclass's `__setattr__`, which
refuses it; only `__init__` (as the generated one did) writes past it.

`fast_frozen_init` writes that `__init__` with the generated one's signature: the fields in
order, positional or keyword, with their defaults. It refuses a class it could not do that
for (no slots, not frozen, a default factory, a field left out of `__init__`, keyword-only
fields or `__post_init__`), when the module defining the class is imported.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def fast_frozen_init(cls: type[T]) -> type[T]:
    """Give the frozen slots dataclass `cls` an `__init__` that sets its slots directly.
    Apply it above `@dataclass(frozen=True, slots=True)`."""
    fields = _supported_fields(cls)
    names = [field.name for field in fields]
    namespace: dict[str, Any] = {f"_set_{name}": getattr(cls, name).__set__ for name in names}
    params = []
    for field in fields:
        if field.default is dataclasses.MISSING:
            params.append(field.name)
        else:
            namespace[f"_default_{field.name}"] = field.default
            params.append(f"{field.name}=_default_{field.name}")
    body = "".join(f"    _set_{name}(self, {name})\n" for name in names) or "    pass\n"
    exec(f"def __init__(self, {', '.join(params)}):\n{body}", namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = dict(cls.__init__.__annotations__)
    init.__doc__ = cls.__init__.__doc__
    setattr(cls, "__init__", init)  # noqa: B010 (mypy refuses assigning a method)
    return cls


def _supported_fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"fast_frozen_init: {cls.__qualname__} is not a frozen dataclass")
    fields = dataclasses.fields(cls)
    problems = [
        ("has no slots", "__slots__" not in cls.__dict__),
        ("has __post_init__", hasattr(cls, "__post_init__")),
        (
            "has a field with a default factory, out of __init__ or keyword-only",
            any(
                f.default_factory is not dataclasses.MISSING or not f.init or f.kw_only is True
                for f in fields
            ),
        ),
    ]
    for problem, found in problems:
        if found:
            raise TypeError(f"fast_frozen_init: {cls.__qualname__} {problem}")
    return fields
