"""Text, JSON and Markdown renderings; certificate fields are attacker-controlled text."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from invsync.agent.exchange import envelope
from invsync.agent.exchange.keys import generate
from invsync.agent.model.findings import AckMark, Finding, Severity, make_finding
from invsync.agent.report.body import (
    REPORT_PAYLOAD_TYPE,
    Resolved,
    Signer,
    SnapshotRef,
    build_report_body,
    parse_report_body,
    verify_report,
)
from invsync.agent.report.render.text import (
    findings_json,
    findings_text,
    markdown_text,
    report_markdown,
    visible,
)
from tests.report_helpers import demo_body

OV_BUG = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
OV_SUBJECT = "CN=JPRS Organization Validation Authority - G3,O=Japan Registry Services Co.\\, Ltd."
AS_OF = datetime(2021, 1, 1, tzinfo=UTC)
MISSING = make_finding(
    "missing-at-subordinate",
    sha256=OV_BUG,
    subject=OV_SUBJECT,
    party="jprs",
    due=datetime(2020, 7, 17, 4, 48, 56, tzinfo=UTC),
    message="secom issued it to jprs, which does not list it",
)
CRASH = make_finding(
    "rule-crashed", sha256="", subject="", party="", message="rule x crashed with KeyError: 'y'"
)
HOSTILE = "CN=evil | injected | `code` <img src=x onerror=alert(1)> *bold* [link](http://x)\nrow"


def _body(findings: list[Finding], signers: list[Signer] | None = None) -> bytes:
    return build_report_body(
        pairing="secom-jprs",
        as_of=AS_OF,
        root=SnapshotRef("secom", "root", 3, "ab" * 32),
        subordinate=SnapshotRef("jprs", "subordinate", 7, "cd" * 32),
        findings=findings,
        signers=signers or [],
    )


def test_findings_text_is_one_aligned_line_per_finding_the_subject_readable_once() -> None:
    assert findings_text([MISSING]) == (
        f"ERROR   missing-at-subordinate  {OV_BUG}  "
        "CN=JPRS Organization Validation Authority - G3, O=Japan Registry Services Co., Ltd.: "
        "secom issued it to jprs, which does not list it\n"
    )


def test_findings_text_marks_a_finding_without_certificate_and_empty_input() -> None:
    line = findings_text([CRASH])
    assert line == "ERROR   rule-crashed            -" + " " * 65 + CRASH.message + "\n"
    assert findings_text([]) == ""


def test_findings_text_cannot_be_split_by_a_newline_in_a_subject() -> None:
    hostile = replace(MISSING, message="a\nERROR   forged-line\u202e")
    text = findings_text([hostile])
    assert text.count("\n") == 1
    assert text.endswith("a\\nERROR   forged-line\\u202e\n")


def test_findings_json_lists_findings_with_meta() -> None:
    obj = json.loads(findings_json([MISSING, CRASH], as_of=AS_OF, pairing="secom-jprs"))
    assert obj["as_of"] == "2021-01-01T00:00:00Z"
    assert obj["pairing"] == "secom-jprs"
    assert obj["summary"] == {"error": 2, "warning": 0, "notice": 0}
    first = obj["findings"][0]
    assert {k: first[k] for k in ("code", "severity", "sha256")} == {
        "code": "missing-at-subordinate",
        "severity": "error",
        "sha256": OV_BUG,
    }
    assert first["message"] == MISSING.message


def test_findings_json_refuses_meta_that_would_hide_the_findings() -> None:
    with pytest.raises(ValueError, match="meta must not be named 'findings' or 'summary'"):
        findings_json([MISSING], findings=[])


def test_markdown_text_escapes_markup_and_shows_controls() -> None:
    assert markdown_text("a|b`c") == "a\\|b\\`c"
    assert markdown_text("<b>&amp;") == "\\<b\\>\\&amp;"
    assert markdown_text("x\ny\r\u202e") == "x\\ny\\r\\u202e"
    assert visible("ok\t") == "ok\\t"


def test_report_markdown_shows_everything_a_reader_needs() -> None:
    key = generate()
    signer = Signer("server", "exchange", key.keyid, key.public.spki_der)
    env = envelope.sign(REPORT_PAYLOAD_TYPE, _body([MISSING], [signer]), [key])
    text = report_markdown(parse_report_body(env.payload), verify_report(env))
    for expected in (
        "# invsync report: secom-jprs",
        "- As of: 2021-01-01T00:00:00Z",
        f"- Report id (SHA-256 of the body): {verify_report(env).report_id}",
        f"| root | secom | 3 | {'ab' * 32} |",
        f"| subordinate | jprs | 7 | {'cd' * 32} |",
        "| error | 1 |",
        "| warning | 0 |",
        "| error | missing-at-subordinate | CN=JPRS Organization Validation Authority - G3, "
        "O=Japan Registry Services Co., Ltd. | - | - | - | - |",
        f"| {OV_BUG} | jprs | Mozilla Root Store Policy 5.3.2 | 2020-07-17T04:48:56Z |",
        "## What to do\n\n- `missing-at-subordinate`: Subordinate: add the certificate to your "
        "inventory and audit scope, or ask the root to revoke it if you never used it.",
        f"| server | exchange | {key.keyid} | valid |",
        "Signatures incomplete: server valid, root absent, subordinate absent.",
    ):
        assert expected in text, expected


def test_report_markdown_without_verification_says_not_verified() -> None:
    key = generate()
    signer = Signer("root", "secom", key.keyid, key.public.spki_der)
    text = report_markdown(parse_report_body(_body([], [signer])), None)
    assert f"| root | secom | {key.keyid} | not verified |" in text
    assert "No findings." in text
    assert "Report id" not in text


def test_report_markdown_escapes_a_hostile_subject() -> None:
    hostile = replace(MISSING, subject=HOSTILE, message=f"secom issued {HOSTILE} to jprs")
    text = report_markdown(parse_report_body(_body([hostile])), None)
    (row,) = [line for line in text.splitlines() if line.startswith("| error | missing")]
    # Unescaped pipes are the table's own: 14 columns need 15, whatever the subject holds.
    assert _unescaped(row, "|") == 15
    assert _unescaped(row, "`") == 0
    assert _unescaped(row, "<") == 0
    assert _unescaped(row, "[") == 0
    assert "\\nrow" in row and "\nrow" not in text
    assert "CN=evil \\| injected \\| \\`code\\` \\<img src=x onerror=alert(1)\\>" in row


def _unescaped(line: str, char: str) -> int:
    count, escaped = 0, False
    for c in line:
        if c == char and not escaped:
            count += 1
        escaped = c == "\\" and not escaped
    return count


def test_report_markdown_escapes_hostile_report_fields() -> None:
    body = parse_report_body(_body([replace(MISSING, party="jprs|`x`", policy="<p>")]))
    text = report_markdown(replace(body, pairing="p|`q`\n# heading"), None)
    assert "# invsync report: p\\|\\`q\\`\\n\\# heading" in text
    assert "jprs\\|\\`x\\`" in text and "\\<p\\>" in text


def test_severities_render_in_their_order() -> None:
    text = report_markdown(parse_report_body(_body([MISSING])), None)
    positions = [text.index(f"| {s.value} |") for s in Severity]
    assert positions == sorted(positions)


def test_report_markdown_shows_acknowledgements_and_what_was_resolved() -> None:
    ack = AckMark("jprs", "revocation planned for 2021-04", AS_OF, AS_OF + timedelta(days=40))
    body = parse_report_body(_body([replace(MISSING, acknowledgement=ack, first_seen=AS_OF)]))
    gone = Resolved(replace(MISSING, code="not-in-audit-scope", first_seen=AS_OF), AS_OF, 2, 3)
    text = report_markdown(replace(body, resolved=(gone,)), None)
    assert "acknowledged by jprs until" in text
    assert "revocation planned for 2021-04" in text
    assert "## Resolved since the previous report" in text
    assert "root v2, subordinate v3" in text


def test_report_markdown_shows_the_certificate_columns_and_each_dn_once_readable() -> None:
    text = report_markdown(demo_body(), None)
    (row,) = [
        line
        for line in text.splitlines()
        if line.startswith("| error | missing-at-subordinate | CN=JPRS Organization")
    ]
    assert row.startswith(
        "| error | missing-at-subordinate | CN=JPRS Organization Validation Authority - G3, "
        "O=Japan Registry Services Co., Ltd., C=JP | OU=Security Communication RootCA2, "
        "O=SECOM Trust Systems CO.,LTD., C=JP | 22B9B172FA931A5B74 | 2020-07-10T04:48:56Z | "
        f"2029-05-29T05:00:39Z | {OV_BUG} | jprs |"
    )
    assert row.count("Japan Registry Services") == 1  # the message does not repeat it
    assert "\\\\," not in text and "\\," not in text  # no RFC 4514 escape, doubled or not
    assert text.count("- `missing-at-subordinate`: Subordinate: add the certificate") == 1
