"""agent/exchange/rejections.py: every refusal a class with a rule, a hint and one status, and
the client's reading of a refusal's rule from the trailing metadata (never from the text).

The real server's metadata is checked over mutual TLS in tests/integration/test_exchange.py and
test_tls.py; here a fake RpcError stands in for servers that send none, or odd values.
"""

from __future__ import annotations

import re
from typing import Any, cast

import grpc
import pytest

from invsync.agent.errors import InvsyncError, SourceError, StoreError, TransportError
from invsync.agent.exchange import rejections as rej
from invsync.agent.exchange.client import NotFoundYet, Refused, rejection_rule, rpc_error
from invsync.agent.exchange.pki import new_ca
from invsync.server.exchange import Exchange
from invsync.server.service import ExchangeService
from invsync.server.store import StoredReport
from invsync.v1 import invsync_pb2 as pb
from tests.tls_certs import client_certificate, pem

ADDRESS = "127.0.0.1:1"


def _rejection_classes() -> list[type[rej.Rejection]]:
    found: list[type[rej.Rejection]] = []
    todo: list[type[rej.Rejection]] = [rej.Rejection]
    while todo:
        cls = todo.pop()
        if not cls.__module__.startswith("tests."):  # not the subclasses tests define
            found.append(cls)
        todo += cls.__subclasses__()
    return found


REJECTIONS = _rejection_classes()


def test_the_walk_finds_every_kind_of_rejection() -> None:
    names = {cls.__name__ for cls in REJECTIONS}
    assert {"SnapshotRejected", "RollbackError", "StreamTooLarge", "NotFound"} <= names
    assert len(REJECTIONS) == len(names)  # no class reached twice


@pytest.mark.parametrize("cls", REJECTIONS, ids=lambda cls: cls.__name__)
def test_every_rejection_has_its_own_rule_hint_and_status(cls: type[rej.Rejection]) -> None:
    # Each in its own class body: an inherited rule or hint would be a forgotten one.
    assert "rule" in vars(cls), f"{cls.__name__} inherits its rule"
    assert "hint" in vars(cls), f"{cls.__name__} inherits its hint"
    assert re.fullmatch("[a-z]+(-[a-z]+)*", cls.rule)
    assert cls.hint.endswith(".")
    assert cls in rej.STATUS, f"{cls.__name__} is missing from the status table"


def test_rule_names_are_unique_and_none_is_the_clients_unknown() -> None:
    rules = [cls.rule for cls in REJECTIONS]
    assert len(set(rules)) == len(rules)
    assert rej.UNKNOWN_RULE not in rules
    assert set(rej.BY_RULE) == set(rules)


def test_the_docstring_table_is_the_status_table() -> None:
    assert rej.__doc__ is not None
    rows = re.findall(r"^\| `([a-z-]+)` \| ([A-Z_]+) \| ", rej.__doc__, re.MULTILINE)
    documented = dict(rows)
    assert len(rows) == len(documented) == len(REJECTIONS)
    assert documented == {cls.rule: rej.STATUS[cls].name for cls in REJECTIONS}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (rej.UnknownPartyError("x"), grpc.StatusCode.PERMISSION_DENIED),
        (rej.EquivocationError("x"), grpc.StatusCode.ALREADY_EXISTS),
        (rej.RollbackError("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (rej.IncompleteStream("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (rej.StreamTooLarge("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),  # not its parent's
        (rej.SnapshotRejected("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (rej.NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (rej.AccessDenied("x"), grpc.StatusCode.PERMISSION_DENIED),
        # Not rejections: as before rejections had rules, the server answers INTERNAL.
        (StoreError("x"), grpc.StatusCode.INTERNAL),
        (SourceError("x"), grpc.StatusCode.INTERNAL),
        (InvsyncError("x"), grpc.StatusCode.INTERNAL),
    ],
)
def test_status_of(error: InvsyncError, status: grpc.StatusCode) -> None:
    assert rej.status_of(error) == status


def test_a_subclass_missing_from_the_table_inherits_its_nearest_status() -> None:
    class LateRollback(rej.RollbackError):
        rule = "late-rollback"

    class Unlisted(StoreError):
        pass

    assert rej.status_of(LateRollback("x")) == grpc.StatusCode.FAILED_PRECONDITION
    assert rej.status_of(Unlisted("x")) == grpc.StatusCode.INTERNAL


def test_a_snapshot_rejection_names_its_rule_and_the_others_say_only_their_message() -> None:
    assert str(rej.RollbackError("v")) == "snapshot rejected [rollback]: v"
    assert str(rej.AccessDenied("party 'x' is not a member")) == "party 'x' is not a member"
    with pytest.raises(InvsyncError, match=r"^snapshot rejected \[bad-signature\]: altered$"):
        raise rej.BadSignatureError("altered")


# The client's side: the rule comes from the trailing metadata only.


class FakeRpcError(grpc.RpcError, grpc.Call):
    """A finished call's error, as grpc raises it, with the trailing metadata of our choosing."""

    def __init__(
        self, code: grpc.StatusCode, details: str, metadata: tuple[tuple[str, Any], ...] = ()
    ) -> None:
        self._code, self._details, self._metadata = code, details, metadata

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._metadata

    def initial_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


def _refusal(code: grpc.StatusCode, *metadata: tuple[str, Any]) -> TransportError:
    text = "snapshot rejected [rollback]: version 1 is below the last accepted version 2"
    return rpc_error(ADDRESS, "PushSnapshot", FakeRpcError(code, text, metadata))


def test_the_rule_comes_from_the_metadata_with_its_hint() -> None:
    error = _refusal(
        grpc.StatusCode.FAILED_PRECONDITION, ("other", "x"), ("invsync-rule", "rollback")
    )
    assert isinstance(error, Refused)
    assert rejection_rule(error) == "rollback"
    assert error.hint == rej.RollbackError.hint
    assert str(error) == (
        f"{ADDRESS}: PushSnapshot: FAILED_PRECONDITION: snapshot rejected [rollback]: "
        "version 1 is below the last accepted version 2"
    )


def test_a_refusal_without_the_metadata_is_unknown_whatever_its_text_says() -> None:
    # An old or foreign server: the text names a rule, but text is never parsed.
    error = _refusal(grpc.StatusCode.FAILED_PRECONDITION)
    assert isinstance(error, Refused)
    assert rejection_rule(error) == "unknown"
    assert error.hint == Refused.hint


@pytest.mark.parametrize("value", ["new-rule", "Evil label", "", b"rollback\xff"])
def test_a_rule_this_agent_does_not_know_never_becomes_a_label(value: str | bytes) -> None:
    error = _refusal(grpc.StatusCode.PERMISSION_DENIED, ("invsync-rule", value))
    assert rejection_rule(error) == "unknown"
    assert error.hint == Refused.hint


def test_a_binary_metadata_value_of_a_known_rule_is_read() -> None:
    error = _refusal(grpc.StatusCode.PERMISSION_DENIED, ("invsync-rule", b"untrusted-signer"))
    assert rejection_rule(error) == "untrusted-signer"


def test_a_named_rule_makes_a_refusal_whatever_its_status() -> None:
    # RESOURCE_EXHAUSTED alone may be gRPC's own limit; with the trailer it is the server's
    # verdict, so a pending snapshot it refused is dropped rather than pushed again forever.
    error = _refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, ("invsync-rule", "stream-too-large"))
    assert type(error) is Refused
    assert rejection_rule(error) == "stream-too-large"
    assert error.hint == rej.StreamTooLarge.hint


def test_resource_exhausted_without_a_rule_is_no_refusal() -> None:
    error = _refusal(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert type(error) is TransportError
    assert rejection_rule(error) is None


def test_not_found_keeps_its_class_and_names_its_rule() -> None:
    error = _refusal(grpc.StatusCode.NOT_FOUND, ("invsync-rule", "not-found"))
    assert isinstance(error, NotFoundYet)
    assert rejection_rule(error) == "not-found"


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN]
)
def test_no_metadata_and_no_refusal_is_no_verdict(code: grpc.StatusCode) -> None:
    error = _refusal(code)
    assert not isinstance(error, Refused)
    assert rejection_rule(error) is None


# The server's side: the servicer aborts with the table's status and the rule as metadata.


class Aborted(Exception):
    pass


JPRS_PEM = pem(client_certificate(new_ca(), "jprs"))


class FakeContext:
    """What the servicer uses of a grpc.ServicerContext, recording how the call ended."""

    def __init__(self) -> None:
        self.metadata: object = None
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_common_name": [b"jprs"], "x509_pem_cert": [JPRS_PEM]}

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def set_trailing_metadata(self, metadata: object) -> None:
        self.metadata = metadata

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise Aborted


class FailingExchange:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def report(
        self, tls_party: str | None, pairing: str, report_id: str, wait: object = None
    ) -> StoredReport:
        raise self.error


def _serve(error: Exception) -> FakeContext:
    context = FakeContext()
    service = ExchangeService(cast(Exchange, FailingExchange(error)), {"jprs": "jprs"})
    with pytest.raises(Aborted):
        service.GetReport(pb.GetReportRequest(pairing="p"), cast(grpc.ServicerContext, context))
    return context


def test_the_servicer_sends_a_rejections_rule_beside_its_status() -> None:
    context = _serve(rej.NotFound("pairing 'p': no report yet"))
    assert context.aborted == (grpc.StatusCode.NOT_FOUND, "pairing 'p': no report yet")
    assert context.metadata == (("invsync-rule", "not-found"),)


def test_an_error_that_is_no_rejection_is_internal_and_names_no_rule() -> None:
    context = _serve(StoreError("server.db: disk I/O error"))
    assert context.aborted == (grpc.StatusCode.INTERNAL, "server.db: disk I/O error")
    assert context.metadata is None


def test_a_foreign_exception_is_not_turned_into_a_refusal() -> None:
    context = FakeContext()
    exchange = FailingExchange(RuntimeError("bug"))
    service = ExchangeService(cast(Exchange, exchange), {"jprs": "jprs"})
    with pytest.raises(RuntimeError, match=r"^bug$"):
        service.GetReport(pb.GetReportRequest(pairing="p"), cast(grpc.ServicerContext, context))
    assert (context.aborted, context.metadata) == (None, None)
