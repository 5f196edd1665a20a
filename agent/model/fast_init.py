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
for (no slots, not frozen, a default factory, `__post_init__`, or any other signature than
its fields in order: a field left out of `__init__`, a keyword-only one, an InitVar), when the
module defining the class is imported.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from typing import Any, TypeVar

T = TypeVar("T")


def fast_frozen_init(cls: type[T]) -> type[T]:
    """Give the frozen slots dataclass `cls` an `__init__` that sets its slots directly.
    Apply it above `@dataclass(frozen=True, slots=True)`."""
    fields = _supported_fields(cls)
    names = [field.name for field in fields]
    setters = [f"{_PREFIX}set_{name}" for name in names]
    defaults = {
        f"{_PREFIX}default_{f.name}": f.default
        for f in fields
        if f.default is not dataclasses.MISSING
    }
    params = [
        f"{f.name}={_PREFIX}default_{f.name}" if f.default is not dataclasses.MISSING else f.name
        for f in fields
    ]
    lines = [f"        {setter}(self, {name})" for setter, name in zip(setters, names, strict=True)]
    body = "\n".join(lines or ["        pass"])
    # As dataclasses does: the __init__ is made inside a function whose parameters are what
    # it uses (a closure), under the module's globals, so that its annotations resolve there.
    source = (
        f"def {_PREFIX}make({', '.join([*setters, *defaults])}):\n"
        f"    def __init__(self, {', '.join(params)}):\n{body}\n"
        "    return __init__\n"
    )
    made: dict[str, Any] = {}
    exec(source, sys.modules[cls.__module__].__dict__, made)
    setter_values = [getattr(cls, name).__set__ for name in names]
    init = made[f"{_PREFIX}make"](*setter_values, *defaults.values())
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = dict(cls.__init__.__annotations__)
    init.__doc__ = cls.__init__.__doc__
    setattr(cls, "__init__", init)  # noqa: B010 (mypy refuses assigning a method)
    return cls


_PREFIX = "_fast_init_"


def _supported_fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"fast_frozen_init: {cls.__qualname__} is not a frozen dataclass")
    fields = dataclasses.fields(cls)
    problems = [
        ("has no slots", "__slots__" not in cls.__dict__),
        ("has __post_init__", hasattr(cls, "__post_init__")),
        (
            "has a field with a default factory",
            any(f.default_factory is not dataclasses.MISSING for f in fields),
        ),
        (
            # Fields out of __init__ or keyword-only, InitVars, a field named self or like
            # the names made here: the signature written would not be the generated one.
            "has an __init__ other than its fields in order",
            _generated_params(cls) != [(f.name, _POSITIONAL, f.default) for f in fields]
            or any(f.name == "self" or f.name.startswith(_PREFIX) for f in fields),
        ),
    ]
    for problem, found in problems:
        if found:
            raise TypeError(f"fast_frozen_init: {cls.__qualname__} {problem}")
    return fields


_POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD


def _generated_params(cls: type) -> list[tuple[str, object, object]]:
    """The generated __init__'s parameters after self: name, kind and default (MISSING for
    none)."""
    init = cls.__dict__["__init__"]  # the one dataclass generated for this very class
    params = list(inspect.signature(init).parameters.values())[1:]
    return [(p.name, p.kind, _default(p)) for p in params]


def _default(param: inspect.Parameter) -> object:
    return dataclasses.MISSING if param.default is inspect.Parameter.empty else param.default
