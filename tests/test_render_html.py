"""The self-contained HTML report: content from real bodies, and hostile text shown as text."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from invsync.agent.model.findings import CATALOGUE, make_finding
from invsync.agent.reconcile.runner import reconcile
from invsync.agent.report.body import (
    ReportBody,
    Signer,
    SnapshotRef,
    build_report_body,
    parse_report_body,
)
from invsync.agent.report.certificates import lookup_in
from invsync.agent.report.render.chart import HistoryPoint, history_chart, history_point
from invsync.agent.report.render.html import CONTENT_SECURITY_POLICY, report_html
from tests.golden_cases import GOLDEN, load
from tests.report_helpers import (
    AS_OF,
    DV_BUG,
    IMG_O,
    JPRS_LIST,
    KEYS,
    OV_BUG,
    ROOT_REF,
    SCRIPT_CN,
    SECOM_LOG,
    SUB_REF,
    body_bytes,
    demo_body,
    demo_findings,
    hostile_findings,
    hostile_record,
    signed,
    signers,
)

# Every element the page may contain: markup from a subject would show up as another one.
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "nav", "a", "section", "h1",
    "h2", "p", "table", "caption", "thead", "tbody", "tr", "th", "td", "span", "code", "strong",
    "div", "ul", "li", "time", "svg", "g", "rect", "line", "text",
}  # fmt: skip
OV_SUBJECT = (
    "CN=JPRS Organization Validation Authority - G3,O=Japan Registry Services Co.\\, Ltd.,C=JP"
)
OV_G3 = {
    OV_BUG,
    "90EE548EBACACAB40207A61A378CE186B94D24AE7C55BFC83065EA96072E2B38",  # 2019
    "04C1871C68607515389FA3B0CFB83DBE6A4AF05E8C80E745702969F240606E36",  # same-day reissue
}


class Page(HTMLParser):
    """What a browser would build: elements, attributes, text, and table rows as cell text."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.text: list[str] = []
        self.rows: dict[str, list[list[str]]] = {}  # table id or class -> rows
        self.row_ids: dict[str, list[str]] = {}  # tr id -> cells
        self._table, self._row, self._row_id, self._cell = "", [""], "", [""]
        self._in_cell = False
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {name: value or "" for name, value in attrs}
        self.tags.append(tag)
        self.attrs += named.items()
        if tag == "table":
            self._table = named.get("id") or named.get("class", "")
            self.rows.setdefault(self._table, [])
        elif tag == "tr":
            self._row, self._row_id = [], named.get("id", "")
        elif tag == "td":
            self._cell, self._in_cell = [], True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._row.append("".join(self._cell))
            self._in_cell = False
        elif tag == "tr" and self._row and self._row != [""]:
            self.rows[self._table].append(self._row)
            if self._row_id:
                self.row_ids[self._row_id] = self._row

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_cell:
            self._cell.append(data)


def _verified_demo_page(
    history: Sequence[HistoryPoint] = (), previous: ReportBody | None = None
) -> tuple[str, Page]:
    """The incident as of 2021-01-01, signed by the server and SECOM (JPRS's signature absent)."""
    body = body_bytes(demo_findings())
    verification = signed(body, "exchange", "secom")
    page = report_html(parse_report_body(body), verification, history, previous=previous)
    return page, Page(page)


# --- hostile certificate text -----------------------------------------------------------------


def _hostile_page() -> tuple[str, str, Page]:
    """A real certificate with script in its subject, missing at the subordinate, in a body
    whose pairing, parties and signer names are markup too."""
    record = hostile_record()
    (finding,) = hostile_findings([record])
    evil = '<b onmouseover="x">'
    key = KEYS["secom"]
    body = build_report_body(
        pairing=f"p{evil}",
        as_of=AS_OF,
        root=SnapshotRef(f"r{evil}", "root", 1, "ab" * 32),
        subordinate=SnapshotRef(f"s{evil}", "subordinate", 1, "cd" * 32),
        findings=[finding, replace(finding, code="missing-at-root", party=f"a{evil}")],
        signers=[Signer("root", f"n{evil}javascript:alert(3)", key.keyid, key.public.spki_der)],
    )
    parsed = parse_report_body(body)
    history = [history_point(parsed)]
    page = report_html(parsed, signed(body, "secom"), history, previous=parsed)
    return page, finding.subject, Page(page)


def test_a_hostile_subject_is_shown_as_text_and_makes_no_element() -> None:
    page, subject, parsed = _hostile_page()
    # RFC 4514 text backslash-escapes `<>"`, which stops no HTML parser.
    assert SCRIPT_CN in subject.replace("\\", "") and IMG_O in subject.replace("\\", "")
    assert set(parsed.tags) <= ALLOWED_TAGS, set(parsed.tags) - ALLOWED_TAGS
    assert "script" not in parsed.tags and "img" not in parsed.tags and "b" not in parsed.tags
    for name, value in parsed.attrs:
        assert not name.startswith("on"), name
        if name != "title":  # the exact subject on hover: text, whatever it says
            assert "javascript:" not in value.lower() and "onerror" not in value.lower(), value
    # The reader sees the subject readable, as text, and exactly on hover; escaped in the source.
    readable = f'O="><img src=x onerror=alert(2)>, CN={SCRIPT_CN}'
    assert readable in parsed.text
    assert ("title", subject) in parsed.attrs
    assert html.escape(subject, quote=True) in page and html.escape(readable) in page
    assert "<script" not in page.lower() and "<img" not in page.lower()


def test_hostile_text_from_the_body_outside_certificates_is_text_too() -> None:
    page, _, parsed = _hostile_page()
    shown = "".join(parsed.text)
    evil = '<b onmouseover="x">'
    for expected in (f"p{evil}", f"r{evil}", f"s{evil}", f"a{evil}", f"n{evil}javascript:"):
        assert expected in shown, expected
    assert "<b " not in page


def test_control_characters_in_a_subject_are_made_visible() -> None:
    (finding,) = hostile_findings([hostile_record()])
    sneaky = replace(finding, subject="CN=evil\u202egpj.exe\nrow")
    page = report_html(parse_report_body(body_bytes([sneaky])), None)
    assert "CN=evil\\u202egpj.exe\\nrow" in page
    assert "\u202e" not in page


# --- the real incident --------------------------------------------------------------------------


def test_the_demo_page_names_both_bug_certificates() -> None:
    page, parsed = _verified_demo_page()
    assert page.startswith('<!DOCTYPE html>\n<html lang="en">')
    certificates = [cells[6][:64] for cells in parsed.rows["findings"]]
    assert certificates.count(OV_BUG) >= 2 and certificates.count(DV_BUG) >= 2
    assert "<h1>invsync report: secom-jprs</h1>" in page
    assert "As of 2021-01-01T00:00:00Z" in page


def test_snapshots_show_party_version_and_digest() -> None:
    _, parsed = _verified_demo_page()
    assert parsed.rows["snapshots"] == [
        ["root", "secom", "3", "ab" * 32],
        ["subordinate", "jprs", "7", "cd" * 32],
    ]


def test_summary_counts_are_the_body_s() -> None:
    body = demo_body()
    _, parsed = _verified_demo_page()
    for severity, count in body.summary.items():
        assert parsed.row_ids[f"summary-{severity}"][:2] == [severity, str(count)]
    assert body.summary["error"] >= 2  # the two missing-at-subordinate of the incident
    overdue = [f for f in body.findings if f.due is not None and f.due < AS_OF]
    assert parsed.row_ids["summary-error"][2] == "0"  # acknowledged: none in the demo body
    assert parsed.row_ids["summary-error"][3] == str(sum(f.severity == "error" for f in overdue))
    jprs = [f for f in body.findings if f.party == "jprs"]
    (jprs_row,) = [r for r in parsed.rows["by-party"] if r[0] == "jprs"]
    assert jprs_row == [
        "jprs",
        str(sum(f.party == "jprs" for f in overdue)),
        *(str(sum(f.severity == s for f in jprs)) for s in ("error", "warning", "notice")),
        str(len(jprs)),
    ]


def test_overdue_findings_are_marked_and_come_first() -> None:
    missing = [f for f in demo_findings() if f.code == "missing-at-subordinate"]
    not_yet = replace(missing[1], due=AS_OF + timedelta(days=3))
    late_warning = make_finding(
        "doppelganger-untracked",
        sha256=DV_BUG,
        subject="CN=x",
        party="secom",
        message="late",
        due=AS_OF - timedelta(days=2),
    )
    body = parse_report_body(body_bytes([missing[0], not_yet, late_warning]))
    page = report_html(body, None)
    rows = Page(page).rows["findings"]
    assert [(r[0], r[1].removesuffix("Mozilla Root Store Policy 5.3.2")) for r in rows] == [
        ("error", "missing-at-subordinate"),  # overdue error
        ("warning", "doppelganger-untracked"),  # overdue warning before a timely error
        ("error", "missing-at-subordinate"),
    ]
    assert "overdue by 167 days" in rows[0][8]
    assert "overdue by 2 days" in rows[1][8]
    assert "overdue" not in rows[2][8] and rows[2][8] == "2021-01-04"
    assert 'datetime="2021-01-04T00:00:00Z"' in page
    assert page.count('class="overdue"') == 2 + 2 + 1  # two rows, two marks, the summary
    by_party = Page(page).rows["by-party"]
    assert by_party == [["jprs", "1", "2", "0", "0", "2"], ["secom", "1", "0", "1", "0", "1"]]


def test_a_finding_due_exactly_now_is_not_overdue() -> None:
    finding = replace(demo_findings()[2], due=AS_OF)
    page = report_html(parse_report_body(body_bytes([finding])), None)
    assert "overdue by" not in page and "0 overdue" in page


def test_the_doppelganger_table_lists_the_g3_groups() -> None:
    _, parsed = _verified_demo_page()
    groups = {key: rows for key, rows in parsed.rows.items() if key.startswith("group-")}
    assert len(groups) == 2
    members = [{cells[0] for cells in rows} for rows in groups.values()]
    assert OV_G3 in members
    (ov_rows,) = [rows for rows in groups.values() if {c[0] for c in rows} == OV_G3]
    flagged = {cells[0]: cells[1:] for cells in ov_rows}
    assert flagged[OV_BUG][:2] == ["warning doppelganger-untracked", "jprs"]
    assert "missing-at-subordinate" in flagged[OV_BUG][2]
    assert {tuple(v[:2]) for k, v in flagged.items() if k != OV_BUG} == {("none", "-")}


def test_a_group_whose_members_were_revoked_differently_is_a_table_too() -> None:
    case = load(GOLDEN / "doppelganger-inconsistent-revocation.json")
    findings = reconcile(case.root, case.sub, case.at)
    page = Page(report_html(parse_report_body(body_bytes(findings, case.at)), None))
    groups = [rows for key, rows in page.rows.items() if key.startswith("group-")]
    flagged = {cells[0]: cells[1] for rows in groups for cells in rows if cells[1] != "none"}
    expected = {f.sha256 for f in findings if f.code == "doppelganger-inconsistent"}
    assert expected and expected <= flagged.keys()
    for sha in expected:
        assert "doppelganger-inconsistent" in flagged[sha]


def test_related_certificates_are_shown_with_the_finding() -> None:
    _, parsed = _verified_demo_page()
    (ov,) = [
        r for r in parsed.rows["findings"] if r[1] == "doppelganger-untracked" and OV_BUG in r[6]
    ]
    assert "related:" in ov[6]
    assert all(sha in ov[6] for sha in OV_G3)


# --- changes, history, signatures ---------------------------------------------------------------


def test_changes_since_the_previous_report() -> None:
    findings = demo_findings()
    gone = make_finding(
        "missing-at-root", sha256=OV_BUG, subject="CN=old", party="secom", message="fixed since"
    )
    kept = [f for f in findings if f.code == "missing-at-subordinate"]
    changed = replace(kept[0], message="worded differently")
    previous = parse_report_body(body_bytes([changed, kept[1], gone], AS_OF - timedelta(days=7)))
    _, parsed = _verified_demo_page(previous=previous)
    new = parsed.rows["changes-new"]
    assert {(r[1], r[3][:64]) for r in new} == {
        ("doppelganger-untracked", OV_BUG),
        ("doppelganger-untracked", DV_BUG),
    }
    assert [(r[1], r[3][:64]) for r in parsed.rows["changes-resolved"]] == [
        ("missing-at-root", OV_BUG)
    ]
    (was,) = parsed.rows["changes-changed"]
    assert was[4] == "message worded differently"
    assert "2 new, 1 resolved, 1 changed, 1 unchanged." in "".join(parsed.text)


def test_without_a_previous_report_or_history_the_page_says_so() -> None:
    page, _ = _verified_demo_page()
    assert "No previous report given." in page
    assert "No history given." in page
    assert "<svg" not in page


def test_the_chart_has_one_bar_per_history_point_with_labelled_axes() -> None:
    history = [
        HistoryPoint(AS_OF - timedelta(days=7 * i), {"error": i, "warning": 2, "notice": 1})
        for i in range(5)
    ]
    _, parsed = _verified_demo_page(history=history)
    starts = [a for a in parsed.attrs if a[0] == "data-as-of"]
    assert sorted(v for _, v in starts) == [
        f"{p.as_of:%Y-%m-%dT%H:%M:%SZ}" for p in sorted(history, key=lambda p: p.as_of)
    ]
    assert [v for _, v in starts] == sorted(v for _, v in starts)  # oldest on the left
    assert parsed.tags.count("svg") == 1
    for label in ("open findings", "report (as of, UTC)", "2020-12-04", "2021-01-01"):
        assert label in parsed.text, label
    # Each bar is stacked by severity, each part titled with its count.
    assert "2020-12-04 00:00: 4 error" in parsed.text
    assert "2021-01-01 00:00: 2 warning" in parsed.text


def test_one_history_point_per_report_body() -> None:
    body = demo_body()
    point = history_point(body)
    assert point.as_of == AS_OF and dict(point.open_by_severity) == dict(body.summary)
    page = report_html(body, None, [point])
    assert Page(page).tags.count("g") == 3  # one bar, the two axes


@pytest.mark.parametrize(
    ("counts", "as_of", "message"),
    [
        ({"critical": 1}, AS_OF, "not severities"),
        ({"error": -1}, AS_OF, "negative"),
        ({"error": 1}, datetime(2021, 1, 1), "timezone"),
    ],
)
def test_history_points_are_checked(counts: dict[str, int], as_of: datetime, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HistoryPoint(as_of, counts)


def test_signatures_show_their_verification() -> None:
    _, parsed = _verified_demo_page()
    statuses = {cells[1]: cells[3] for cells in parsed.rows["signatures"]}
    assert statuses == {"exchange": "valid", "secom": "valid", "jprs": "absent"}
    assert "Signatures INCOMPLETE: server valid, root valid, subordinate absent." in "".join(
        parsed.text
    )
    unverified = report_html(demo_body(), None)
    assert unverified.count("not verified") == 3


def test_a_verification_of_another_body_is_refused() -> None:
    other = signed(body_bytes(demo_findings()[:1]), "exchange")
    with pytest.raises(ValueError, match="another report"):
        report_html(demo_body(), other)


def test_an_empty_report() -> None:
    page = report_html(parse_report_body(body_bytes([])), None)
    assert "No findings." in page and "No doppelganger findings." in page
    assert "0 open findings, " in page
    one = report_html(parse_report_body(body_bytes(demo_findings()[:1])), None)
    assert "1 open finding, " in one


# --- self-contained ----------------------------------------------------------------------------


def test_the_page_loads_nothing_from_outside(tmp_path: Path) -> None:
    history = [HistoryPoint(AS_OF, {"error": 2, "warning": 2})]
    page, parsed = _verified_demo_page(history=history, previous=demo_body())
    links = [value for name, value in parsed.attrs if name in {"href", "src", "xlink:href"}]
    assert links and all(value.startswith("#") for value in links)
    assert not any(name in {"src", "srcset", "action", "background"} for name, _ in parsed.attrs)
    assert "url(" not in page and "@import" not in page and "//" not in page
    assert ("content", CONTENT_SECURITY_POLICY) in parsed.attrs
    out = tmp_path / "report.html"
    out.write_text(page, encoding="utf-8")
    assert Page(out.read_text(encoding="utf-8")).tags == parsed.tags


# --- the chart ----------------------------------------------------------------------------------


def test_the_chart_stacks_each_bar_from_the_time_axis_errors_first() -> None:
    older = HistoryPoint(AS_OF - timedelta(days=1), {"notice": 1, "error": 3})
    chart = history_chart([HistoryPoint(AS_OF, {"warning": 2}), older])
    assert [bar.as_of for bar in chart.bars] == ["2020-12-31T00:00:00Z", "2021-01-01T00:00:00Z"]
    first = chart.bars[0]
    assert [s.severity for s in first.segments] == ["error", "notice"]
    assert first.segments[0].y + first.segments[0].height == chart.base
    assert first.segments[1].y + first.segments[1].height == first.segments[0].y
    assert first.segments[1].y == chart.top  # 4 open: the tallest bar reaches the top tick
    assert [t.count for t in chart.ticks] == [0, 1, 2, 3, 4] and first.total == 4
    assert [label.text for label in chart.labels] == ["2020-12-31", "2021-01-01"]


def test_a_chart_needs_a_report() -> None:
    with pytest.raises(ValueError, match=r"^a chart needs at least one report$"):
        history_chart([])


def _axis_labels(history: list[HistoryPoint]) -> list[str]:
    page = report_html(demo_body(), None, history)
    axis = page[page.index('<g class="count-axis">') : page.index('<g class="time-axis">')]
    return Page(axis).text


def test_the_count_axis_reaches_the_tallest_bar_in_round_steps() -> None:
    # No findings at all: still an axis from 0 to 1.
    assert _axis_labels([HistoryPoint(AS_OF, {})]) == ["0", "1", "open findings"]
    busy = [HistoryPoint(AS_OF - timedelta(days=i), {"warning": 1234 - i}) for i in range(3)]
    assert _axis_labels(busy) == ["0", "500", "1000", "1500", "open findings"]


# --- the columns an officer scans -----------------------------------------------------------------


def test_a_finding_row_shows_its_certificate_once_with_what_to_do() -> None:
    page, parsed = _verified_demo_page()
    row = next(r for r in parsed.rows["findings"] if r[1].startswith("missing-at-subordinate"))
    assert row[2:8] == [
        "CN=JPRS Organization Validation Authority - G3, O=Japan Registry Services Co., Ltd., C=JP",
        "OU=Security Communication RootCA2, O=SECOM Trust Systems CO.,LTD., C=JP",
        "22B9B172FA931A5B74",
        "2020-07-10 to 2029-05-29",
        OV_BUG,  # shortened by CSS only: selecting it copies all 64 digits
        "jprs",
    ]
    assert row[9] == CATALOGUE["missing-at-subordinate"].action
    assert row[10] == "secom issued it to jprs, which does not list it"
    # The exact RFC 4514 subject, the full SHA-256 and the exact times are there on hover.
    attrs = set(parsed.attrs)
    assert ("title", OV_SUBJECT) in attrs and ("data-sha256", OV_BUG) in attrs
    assert ("title", OV_BUG) in attrs and ("title", "notBefore 2020-07-10T04:48:56Z") in attrs
    assert "Co.\\, Ltd., C=JP</span>" not in page


def test_a_body_without_certificates_renders_blank_certificate_columns() -> None:
    body = parse_report_body(body_bytes(demo_findings()))
    old = replace(body, certificates=())
    rows = Page(report_html(old, None)).rows["findings"]
    assert rows and all(r[3:6] == ["-", "-", "-"] for r in rows)
    assert all(r[6][:64] in {OV_BUG, DV_BUG} for r in rows)


def test_a_continued_report_without_its_predecessor_shows_what_it_lists_resolved() -> None:
    first = parse_report_body(body_bytes(demo_findings()))
    kept = [f for f in demo_findings() if f.sha256 != OV_BUG]
    second = build_report_body(
        pairing="secom-jprs",
        as_of=AS_OF + timedelta(days=1),
        root=ROOT_REF,
        subordinate=SUB_REF,
        findings=kept,
        signers=signers(),
        previous=first,
        certificates=lookup_in(SECOM_LOG, JPRS_LIST),
    )
    body = parse_report_body(second)
    page = report_html(body, None)  # the report it continues is not at hand
    assert "No previous report given." not in page
    gone = len([f for f in demo_findings() if f.sha256 == OV_BUG])
    assert (
        f"The report this one continues ({first.report_id[:12]}) is not among these reports; "
        f"this report lists {gone} finding(s) resolved since it."
    ) in page
    resolved = Page(page).rows["changes-resolved"]
    assert len(resolved) == gone == len(body.resolved)
    assert all(OV_BUG in " ".join(row) or OV_BUG[:16] in " ".join(row) for row in resolved)
