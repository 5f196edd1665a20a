"""`fast_frozen_init`: the same `__init__` as the dataclass generated, only faster."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from datetime import UTC, datetime
from typing import Any

import pytest

from invsync.agent.model.fast_init import fast_frozen_init
from invsync.agent.model.record import CertInfo, CertRecord, Revocation, SourceRef
from tests.golden_cases import certificates

FAST = (Revocation, SourceRef, CertInfo, CertRecord)
AT = datetime(2021, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("cls", FAST, ids=lambda cls: cls.__name__)
def test_the_signature_is_the_fields_in_order_with_their_defaults(cls: type) -> None:
    params = list(inspect.signature(cls).parameters.values())
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    assert {p.kind for p in params} == {inspect.Parameter.POSITIONAL_OR_KEYWORD}
    assert [p.default for p in params] == [
        inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default for f in fields
    ]


@pytest.mark.parametrize("cls", FAST, ids=lambda cls: cls.__name__)
def test_the_annotations_resolve_in_the_module_as_the_generated_ones_did(cls: type) -> None:
    hints = typing.get_type_hints(cls.__dict__["__init__"])
    assert [name for name in hints if name != "return"] == [f.name for f in dataclasses.fields(cls)]


def _info() -> CertInfo:
    return next(iter(certificates().values()))


def _values(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def test_positional_keyword_and_replaced_instances_are_equal_and_frozen() -> None:
    info = _info()
    values = _values(info)
    by_position = CertInfo(*values.values())
    assert by_position == CertInfo(**values) == info
    assert hash(by_position) == hash(info)
    assert dataclasses.replace(info, subject="CN=x").subject == "CN=x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        by_position.subject = "CN=x"  # type: ignore[misc]
    record = CertRecord(info)
    assert (record.operator, record.sources, record.attribution) == (None, (), "")
    source = SourceRef("pem", "a.pem", AT, AT)
    assert CertRecord(info, "jprs", sources=(source,)).sources == (source,)
    assert Revocation(AT, "", "log").crl_signature_hash == ""


def test_wrong_arguments_fail_as_the_generated_init_does() -> None:
    with pytest.raises(TypeError, match=r"^CertRecord.__init__\(\) missing 1 required positional "
                       r"argument: 'info'$"):  # fmt: skip
        CertRecord()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'color'$"):
        SourceRef("pem", "a.pem", AT, AT, color="red")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"takes from 4 to 5 positional arguments but 6"):
        Revocation(AT, "", "log", "", "x")  # type: ignore[call-arg]


@dataclasses.dataclass(frozen=True)
class _NoSlots:
    a: int


@dataclasses.dataclass(slots=True)
class _NotFrozen:
    a: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Factory:
    a: tuple[int, ...] = dataclasses.field(default_factory=tuple)


@dataclasses.dataclass(frozen=True, slots=True)
class _PostInit:
    a: int

    def __post_init__(self) -> None:
        pass


@dataclasses.dataclass(frozen=True, slots=True)
class _WithInitVar:
    a: int
    b: dataclasses.InitVar[int]


@dataclasses.dataclass(frozen=True, slots=True)
class _KeywordOnly:
    a: int = dataclasses.field(kw_only=True)


@dataclasses.dataclass(frozen=True, slots=True)
class _OutOfInit:
    a: int
    b: int = dataclasses.field(default=0, init=False)


@dataclasses.dataclass(frozen=True, slots=True)
class _LikeItsNames:
    _fast_init_set_a: int
    a: int


OTHER_SIGNATURE = "has an __init__ other than its fields in order"


@pytest.mark.parametrize(
    ("cls", "problem"),
    [
        (_NoSlots, "has no slots"),
        (_NotFrozen, "is not a frozen dataclass"),
        (_Factory, "has a field with a default factory"),
        (_PostInit, "has __post_init__"),
        (int, "is not a frozen dataclass"),
        (_WithInitVar, OTHER_SIGNATURE),
        (_KeywordOnly, OTHER_SIGNATURE),
        (_OutOfInit, OTHER_SIGNATURE),
        (_LikeItsNames, OTHER_SIGNATURE),
    ],
)
def test_a_class_it_cannot_do_is_refused_when_decorated(cls: type, problem: str) -> None:
    with pytest.raises(TypeError, match=f"^fast_frozen_init: {cls.__qualname__} {problem}"):
        fast_frozen_init(cls)
