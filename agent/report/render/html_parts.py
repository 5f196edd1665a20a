"""Parts of the HTML report about findings: the cells every table shares, the doppelganger
groups and the changes since a previous report (`agent.report.render.html` assembles the page).

All markup comes from `agent.report.render.markup`, which escapes every string it is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from invsync.agent.model.findings import DOPPELGANGER_UNTRACKED, Finding, Severity
from invsync.agent.report.body import ReportBody
from invsync.agent.report.diff import diff_findings
from invsync.agent.report.render.markup import Html, element, join, row, section, table
from invsync.agent.times import rfc3339


def is_overdue(finding: Finding, as_of: datetime) -> bool:
    """Past its due date at the report's own clock (never the reader's: a page never changes)."""
    return finding.due is not None and finding.due < as_of


def badge(severity: Severity) -> Html:
    return element("span", severity.value, class_=f"badge {severity.value}")


def sha(digest: str) -> Html:
    return element("code", digest) if digest else Html("(no certificate)")


def party_name(name: str) -> str:
    return name or "(no party)"


def certificate(finding: Finding) -> Html:
    """SHA-256, subject and the related certificates of a finding."""
    parts = [sha(finding.sha256)]
    if finding.subject:
        parts.append(element("div", finding.subject, class_="subject"))
    if finding.related:
        items = (element("li", element("code", r)) for r in finding.related)
        related = element("ul", *items, class_="related")
        parts.append(element("div", "related certificates:", related))
    return join(parts)


# --- doppelganger groups ----------------------------------------------------------------------


def doppelganger_groups(findings: Iterable[Finding]) -> list[tuple[tuple[str, ...], list[Finding]]]:
    """(members, findings) per group: a `doppelganger-untracked` finding's certificate and its
    related ones are the whole group, so findings with the same member set are one group."""
    groups: dict[tuple[str, ...], list[Finding]] = {}
    for finding in findings:
        if finding.code == DOPPELGANGER_UNTRACKED:
            members = tuple(sorted({finding.sha256, *finding.related}))
            groups.setdefault(members, []).append(finding)
    return sorted(groups.items())


def doppelganger_section(body: ReportBody) -> Html:
    groups = doppelganger_groups(body.findings)
    title = "Doppelganger groups (same subject and key)"
    if not groups:
        return section("doppelgangers", title, element("p", "No doppelganger findings."))
    intro = element(
        "p",
        "Certificates sharing subject and key: whoever holds the key can use every member, "
        "so every member must be listed, revoked and audited alike.",
    )
    tables = [
        _group_table(n, members, flagged, body) for n, (members, flagged) in enumerate(groups, 1)
    ]
    return section("doppelgangers", title, intro, *tables)


def _group_table(
    number: int, members: Sequence[str], flagged: Sequence[Finding], body: ReportBody
) -> Html:
    by_member = {finding.sha256: finding for finding in flagged}
    rows = [_member_row(sha256, by_member.get(sha256), body) for sha256 in members]
    header = ["member (SHA-256)", "doppelganger finding", "must act", "other findings"]
    caption = f"Group {number}: {flagged[0].subject}"
    return table(header, rows, caption=caption, class_="doppelganger-group", id=f"group-{number}")


def _member_row(sha256: str, finding: Finding | None, body: ReportBody) -> Html:
    others = sorted(
        {f.code for f in body.findings if f.sha256 == sha256} - {DOPPELGANGER_UNTRACKED}
    )
    if finding is None:
        return row([sha(sha256), "none", "-", ", ".join(others) or "-"])
    cells: list[Html | str] = [sha(sha256), badge(finding.severity), party_name(finding.party)]
    return row([*cells, ", ".join(others) or "-"], class_="flagged")


# --- changes since the previous report --------------------------------------------------------


def changes_section(body: ReportBody, previous: ReportBody | None) -> Html:
    """New, resolved and changed findings, matched as `invsync report diff` matches them."""
    title = "Changes since the previous report"
    if previous is None:
        return section("changes", title, element("p", "No previous report given."))
    diff = diff_findings(previous.findings, body.findings)
    lead = element(
        "p",
        f"Compared with the report as of {rfc3339(previous.as_of)} "
        f"({previous.root.party} v{previous.root.version}, "
        f"{previous.subordinate.party} v{previous.subordinate.version}): "
        f"{len(diff.new)} new, {len(diff.resolved)} resolved, {len(diff.changed)} changed, "
        f"{len(diff.unchanged)} unchanged.",
    )
    parts = [
        _change_table("new", "New", [(f, "") for f in diff.new]),
        _change_table("resolved", "Resolved", [(f, "") for f in diff.resolved]),
        _change_table("changed", "Changed", [(new, _was(old, new)) for old, new in diff.changed]),
    ]
    return section("changes", title, lead, *parts)


def _change_table(kind: str, caption: str, changes: Sequence[tuple[Finding, str]]) -> Html:
    if not changes:
        return Html("")
    header = ["severity", "code", "must act", "certificate"]
    rows = [
        row(
            [badge(f.severity), element("code", f.code), party_name(f.party), certificate(f)]
            + ([was] if kind == "changed" else [])
        )
        for f, was in changes
    ]
    header += ["was"] if kind == "changed" else []
    return table(header, rows, caption=caption, class_=f"changes-{kind}")


_COMPARED = ("severity", "due", "policy", "message", "related")


def _was(old: Finding, new: Finding) -> str:
    """The previous values of the fields that changed."""
    before, after = old.to_json(), new.to_json()
    changed = [name for name in _COMPARED if before[name] != after[name]]
    return "; ".join(f"{name} {_plain(before[name])}" for name in changed)


def _plain(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "none"
    return str(value)
