"""What `invsync status` tells an operator about each pairing of an agent: its last snapshot
(version, age, expiry), a snapshot still waiting for its receipt, the latest report in the
report_dir (signatures, open and acknowledged findings), and whether the server answers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.findings import Severity
from agent.report import verify_report
from agent.report_files import report_files
from agent.store import AgentStore
from agent.times import rfc3339

Probe = Callable[[str], str]  # pairing -> "reachable ..." or raises InvsyncError


def pairing_status(
    config: AgentConfig, store: AgentStore, pairing: str, now: datetime, probe: Probe | None
) -> dict[str, Any]:
    return {
        "pairing": pairing,
        "snapshot": _snapshot(store, pairing, now),
        "pending_version": _pending(store, pairing),
        "report": _report(config.report_dir, pairing),
        "server": _server(probe, pairing),
    }


def _snapshot(store: AgentStore, pairing: str, now: datetime) -> dict[str, Any] | None:
    sent = store.latest_sent_snapshot(pairing)
    if sent is None:
        return None
    return {
        "version": sent.version,
        "issued_at": rfc3339(sent.issued_at),
        "age_seconds": int((now - sent.issued_at).total_seconds()),
        "expires_at": rfc3339(sent.expires_at),
        "expired": sent.expires_at <= now,
    }


def _pending(store: AgentStore, pairing: str) -> int | None:
    pending = store.pending_snapshot(pairing)
    return None if pending is None else pending.version


def _report(directory: Path, pairing: str) -> dict[str, Any] | None:
    files = (
        [f for f in report_files(directory) if f.body.pairing == pairing]
        if directory.is_dir()
        else []
    )
    if not files:
        return None
    latest = files[-1]
    verification = verify_report(latest.envelope)
    findings = latest.body.findings
    open_ = [f for f in findings if f.acknowledgement is None]
    return {
        "id": latest.report_id,
        "as_of": rfc3339(latest.body.as_of),
        "file": str(latest.path),
        "signatures": {role: status.value for role, status in verification.roles.items()},
        "open": {s.value: sum(1 for f in open_ if f.severity == s) for s in Severity},
        "acknowledged": len(findings) - len(open_),
    }


def _server(probe: Probe | None, pairing: str) -> str:
    if probe is None:
        return "not asked (--offline)"
    try:
        return probe(pairing)
    except Exception as e:  # any failure is the answer: the server cannot be reached or refused
        return f"unreachable: {e}"


def status_text(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        lines.append(f"pairing {row['pairing']}")
        snap = row["snapshot"]
        if snap is None:
            lines.append("  snapshot: none pushed yet")
        else:
            state = "EXPIRED" if snap["expired"] else f"expires {snap['expires_at']}"
            lines.append(
                f"  snapshot: version {snap['version']}, {snap['age_seconds']} s old, {state}"
            )
        if row["pending_version"] is not None:
            lines.append(f"  pending: version {row['pending_version']} awaits its receipt")
        lines.append("  " + _report_line(row["report"]))
        lines.append(f"  server: {row['server']}")
    return "\n".join(lines) + "\n"


def _report_line(report: dict[str, Any] | None) -> str:
    if report is None:
        return "report: none written yet"
    signatures = ", ".join(f"{role} {status}" for role, status in report["signatures"].items())
    counts = "/".join(str(report["open"][s.value]) for s in Severity)
    return (
        f"report: {report['id'][:12]} as of {report['as_of']}; open error/warning/notice "
        f"{counts}, {report['acknowledged']} acknowledged; {signatures}"
    )
