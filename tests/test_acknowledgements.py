"""Acknowledgements: signed in the party's snapshot, marking only the acting party's findings
while in force; configuration errors name the key; every rendering shows them, escaped."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from invsync.agent.config.settings import load_agent_config
from invsync.agent.errors import ConfigError
from invsync.agent.exchange.rejections import MalformedSnapshot
from invsync.agent.exchange.snapshot import build_payload, decode_payload
from invsync.agent.model.acknowledgements import Acknowledgement
from invsync.agent.model.findings import (
    DOPPELGANGER_UNTRACKED,
    MISSING_AT_SUBORDINATE,
    AckMark,
    Finding,
)
from invsync.agent.model.snapshot import ROOT, SUBORDINATE, Side, SnapshotHeader
from invsync.agent.reconcile.runner import reconcile
from invsync.agent.report.body import parse_report_body
from invsync.agent.report.render.csv import findings_csv
from invsync.agent.report.render.html import report_html
from invsync.server.localfed import agent_config, write_federation
from tests.headers import header
from tests.report_helpers import AS_OF, DV_BUG, JPRS_LIST, OV_BUG, SECOM_LOG, body_bytes
from tests.test_report_schema import VALIDATOR

REASON = "revocation planned for 2021-04"
ACKED_AT = datetime(2020, 12, 15, tzinfo=UTC)
EXPIRES = datetime(2021, 2, 1, tzinfo=UTC)
OV_ACK = Acknowledgement(MISSING_AT_SUBORDINATE, OV_BUG, REASON, ACKED_AT, EXPIRES)


def _header(party: str, role: str, acks: tuple[Acknowledgement, ...]) -> SnapshotHeader:
    return header(
        party, "secom-jprs", AS_OF, role=role, acknowledgements=acks, valid_for=timedelta(days=400)
    )


def _findings(
    at: datetime = AS_OF,
    secom: tuple[Acknowledgement, ...] = (),
    jprs: tuple[Acknowledgement, ...] = (),
) -> tuple[Finding, ...]:
    root = Side("secom", SECOM_LOG, header=_header("secom", ROOT, secom))
    sub = Side("jprs", JPRS_LIST, header=_header("jprs", SUBORDINATE, jprs))
    return reconcile(root, sub, at)


def _marks(findings: tuple[Finding, ...]) -> dict[tuple[str, str], AckMark | None]:
    return {(f.code, f.sha256): f.acknowledgement for f in findings}


def test_an_acknowledgement_in_force_marks_only_that_finding() -> None:
    marks = _marks(_findings(jprs=(OV_ACK,)))
    assert marks[(MISSING_AT_SUBORDINATE, OV_BUG)] == AckMark("jprs", REASON, ACKED_AT, EXPIRES)
    assert marks[(MISSING_AT_SUBORDINATE, DV_BUG)] is None
    assert marks[(DOPPELGANGER_UNTRACKED, OV_BUG)] is None  # another code, same certificate


def test_an_expired_acknowledgement_leaves_the_finding_open_again() -> None:
    assert _marks(_findings(EXPIRES - timedelta(seconds=1), jprs=(OV_ACK,)))[
        (MISSING_AT_SUBORDINATE, OV_BUG)
    ] == AckMark("jprs", REASON, ACKED_AT, EXPIRES)
    for at in (EXPIRES, EXPIRES + timedelta(days=30)):
        assert _marks(_findings(at, jprs=(OV_ACK,)))[(MISSING_AT_SUBORDINATE, OV_BUG)] is None


def test_an_acknowledgement_before_it_was_given_does_not_count() -> None:
    early = replace(OV_ACK, acknowledged_at=AS_OF + timedelta(days=1))
    assert _marks(_findings(jprs=(early,)))[(MISSING_AT_SUBORDINATE, OV_BUG)] is None


def test_an_acknowledgement_by_a_party_that_need_not_act_is_ignored() -> None:
    findings = _findings(secom=(OV_ACK,))
    assert all(f.acknowledgement is None for f in findings)
    assert findings == _findings()


def test_of_two_acknowledgements_the_one_expiring_last_is_shown() -> None:
    longer = replace(OV_ACK, reason="longer", expires_at=EXPIRES + timedelta(days=60))
    mark = _marks(_findings(jprs=(OV_ACK, longer)))[(MISSING_AT_SUBORDINATE, OV_BUG)]
    assert mark is not None and mark.reason == "longer"


def test_acknowledgements_travel_in_the_signed_snapshot_header() -> None:
    payload = build_payload(
        party="jprs",
        pairing="secom-jprs",
        role=SUBORDINATE,
        version=1,
        issued_at=AS_OF,
        expires_at=AS_OF + timedelta(days=1),
        records=[],
        acknowledgements=[OV_ACK],
    )
    assert decode_payload(payload).header.acknowledgements == (OV_ACK,)
    no_acks = build_payload(
        party="jprs",
        pairing="secom-jprs",
        role=SUBORDINATE,
        version=1,
        issued_at=AS_OF,
        expires_at=AS_OF + timedelta(days=1),
        records=[],
    )
    assert decode_payload(no_acks).header.acknowledgements == ()


MALFORMED = (
    r"\[malformed-snapshot\]: header acknowledgement 0: unknown finding code 'no-such-code'$"
)


def test_a_snapshot_with_a_malformed_acknowledgement_is_refused() -> None:
    from invsync.v1 import invsync_pb2 as pb

    msg = pb.SnapshotPayload.FromString(
        build_payload(
            party="jprs",
            pairing="secom-jprs",
            role=SUBORDINATE,
            version=1,
            issued_at=AS_OF,
            expires_at=AS_OF + timedelta(days=1),
            records=[],
            acknowledgements=[OV_ACK],
        )
    )
    msg.header.acknowledgements[0].code = "no-such-code"
    with pytest.raises(
        MalformedSnapshot,
        match=MALFORMED,
    ):
        decode_payload(msg.SerializeToString())


# --- configuration --------------------------------------------------------------------------

ACK_TOML = """
[[acknowledgements]]
code = "not-in-audit-scope"
sha256 = "21c066332d6b92dd9a253e2637684a5bc3e31357f863bed7a2f98c8459a33b62"
reason = "revocation planned for 2021-04"
acknowledged_at = 2021-02-15T09:00:00+09:00
expires_at = 2021-04-30T00:00:00Z
"""


@pytest.fixture
def jprs_toml(tmp_path: Path) -> Path:
    write_federation(tmp_path)
    path = tmp_path / "jprs.toml"
    path.write_text(agent_config("jprs", 7443))
    return path


def _with(path: Path, old: str = "", new: str = "") -> Path:
    assert old in ACK_TOML
    path.write_text(path.read_text() + ACK_TOML.replace(old, new))
    return path


def _fails(path: Path, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(f'{path}: {message}')}$"):
        load_agent_config(path)


def test_acknowledgements_load_from_the_config_in_utc(jprs_toml: Path) -> None:
    assert load_agent_config(jprs_toml).acknowledgements == ()
    (ack,) = load_agent_config(_with(jprs_toml)).acknowledgements
    assert ack == Acknowledgement(
        "not-in-audit-scope",
        OV_BUG,
        REASON,
        datetime(2021, 2, 15, tzinfo=UTC),
        datetime(2021, 4, 30, tzinfo=UTC),
    )


def test_an_unknown_code_is_a_config_error_naming_the_key(jprs_toml: Path) -> None:
    _with(jprs_toml, '"not-in-audit-scope"', '"not-in-scope"')
    _fails(
        jprs_toml,
        "acknowledgements[0].code: unknown finding code 'not-in-scope' (see `invsync rules`)",
    )


def test_a_time_without_offset_is_refused(jprs_toml: Path) -> None:
    _with(jprs_toml, "2021-04-30T00:00:00Z", "2021-04-30T00:00:00")
    _fails(
        jprs_toml,
        "acknowledgements[0].expires_at: needs a UTC offset, such as 2021-03-01T00:00:00Z",
    )


def test_acknowledged_at_is_required(jprs_toml: Path) -> None:
    _with(jprs_toml, "acknowledged_at = 2021-02-15T09:00:00+09:00\n", "")
    _fails(jprs_toml, "acknowledgements[0].acknowledged_at: missing")


def test_an_expiry_before_the_acknowledgement_is_refused(jprs_toml: Path) -> None:
    _with(jprs_toml, "2021-04-30T00:00:00Z", "2021-02-15T00:00:00Z")
    _fails(jprs_toml, "acknowledgements[0].expires_at: must be after acknowledged_at")


def test_a_bad_sha256_and_an_empty_reason_are_refused(jprs_toml: Path) -> None:
    text = jprs_toml.read_text()
    _with(jprs_toml, "21c06633", "zz")
    _fails(
        jprs_toml,
        "acknowledgements[0].sha256: expected 64 hex digits, got "
        "'zz2d6b92dd9a253e2637684a5bc3e31357f863bed7a2f98c8459a33b62'",
    )
    jprs_toml.write_text(text)
    _with(jprs_toml, f'"{REASON}"', '" "')
    _fails(jprs_toml, "acknowledgements[0].reason: must say why the finding is acknowledged")


# --- the body and its renderings ------------------------------------------------------------

HOSTILE = '=HYPERLINK("http://x")<script>alert(3)</script>'


def _acked_body(reason: str = REASON) -> bytes:
    return body_bytes(_findings(jprs=(replace(OV_ACK, reason=reason),)))


def test_a_body_with_an_acknowledged_finding_validates_and_round_trips() -> None:
    body = _acked_body()
    obj = json.loads(body)
    (acked,) = [f for f in obj["findings"] if f["acknowledgement"] is not None]
    assert acked["acknowledgement"] == {
        "party": "jprs",
        "reason": REASON,
        "acknowledged_at": "2020-12-15T00:00:00Z",
        "expires_at": "2021-02-01T00:00:00Z",
    }
    assert [e.message for e in VALIDATOR.iter_errors(obj)] == []
    assert body_bytes(parse_report_body(body).findings) == body


def test_the_schema_refuses_an_acknowledgement_without_expiry() -> None:
    obj = json.loads(_acked_body())
    (acked,) = [f for f in obj["findings"] if f["acknowledgement"] is not None]
    del acked["acknowledgement"]["expires_at"]
    (error,) = VALIDATOR.iter_errors(obj)
    assert error.message.endswith("is not valid under any of the given schemas")
    assert list(error.path)[-1] == "acknowledgement"


def test_csv_flattens_the_acknowledgement_and_guards_its_reason() -> None:
    body = parse_report_body(_acked_body(HOSTILE))
    rows = list(csv.DictReader(io.StringIO(findings_csv(body.findings), newline="")))
    (acked,) = [r for r in rows if r["acknowledged_by"]]
    assert (acked["code"], acked["sha256"]) == (MISSING_AT_SUBORDINATE, OV_BUG)
    assert acked["acknowledged_until"] == "2021-02-01T00:00:00Z"
    assert acked["acknowledgement_reason"] == "'" + HOSTILE
    assert sum(1 for r in rows if not r["acknowledged_by"]) == len(rows) - 1


def test_html_counts_acknowledged_apart_and_shows_the_reason_as_text() -> None:
    body = parse_report_body(_acked_body(HOSTILE))
    page = report_html(body, None)
    open_count = len(body.findings) - 1
    assert f"{open_count} open findings, 1 acknowledged, " in page
    assert "<script>alert(3)" not in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page
    assert page.count('class="acknowledgement"') == 1
    assert 'until <time datetime="2021-02-01T00:00:00Z">' in page


def test_an_acknowledgement_needs_a_known_code_and_an_expiry_after_it() -> None:
    with pytest.raises(ValueError, match=r"^unknown finding code 'nope'$"):
        replace(OV_ACK, code="nope")
    with pytest.raises(ValueError, match=r"^expires_at must be after acknowledged_at$"):
        replace(OV_ACK, expires_at=ACKED_AT)
