"""What `invsync status` tells an operator about each pairing of an agent: its last snapshot
(version, age, expiry), a snapshot still waiting for its receipt, the peer's last snapshot
(verified, from the server; offline, the version the latest report names), the latest report in
the report_dir (signatures as the agent's configuration pins them, open and acknowledged
findings), what the agent refused of the server as a finding (a peer rollback, a log that does not
hold together, a split view), and whether the server answers; then each notification channel
(`[[notify]]`): its events waiting in the outbox, its last success and its last failure."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from invsync.agent.config.settings import AgentConfig
from invsync.agent.daemon.rotation import report_pins
from invsync.agent.errors import InvsyncError, bounded
from invsync.agent.exchange.client import Refused
from invsync.agent.exchange.rejections import MESSAGE_CHARS
from invsync.agent.model.findings import Severity
from invsync.agent.model.snapshot import SnapshotHeader
from invsync.agent.notify.channels import describe
from invsync.agent.report.body import Pins, verify_report
from invsync.agent.report.files import report_files
from invsync.agent.store.agent_store import AgentStore
from invsync.agent.times import rfc3339

Probe = Callable[[str], str]  # pairing -> "reachable ..." or raises InvsyncError
# pairing -> the header of the peer's latest snapshot at the server, verified with the peer's
# keys; None when the peer has pushed none. Raises InvsyncError when it cannot tell.
PeerLookup = Callable[[str], SnapshotHeader | None]


def pairing_status(
    config: AgentConfig,
    store: AgentStore,
    pairing: str,
    now: datetime,
    probe: Probe | None,
    peer: PeerLookup | None = None,
) -> dict[str, Any]:
    report = _report(config.report_dir, pairing, report_pins(config, store), config.party)
    return {
        "pairing": pairing,
        "snapshot": _snapshot(store, pairing, now),
        "pending_version": _pending(store, pairing),
        "peer_snapshot": _peer_snapshot(peer, pairing, now, report),
        "report": report,
        "refused": _refused(store, pairing),
        "server": _server(probe, pairing),
        "notifications": notification_status(config, store),
    }


def notification_status(config: AgentConfig, store: AgentStore) -> list[dict[str, Any]]:
    """Each channel's outbox: the agent's, so every pairing's row shows the same."""
    states = store.notifications.channel_states(c.name for c in config.notify.channels)
    return [
        {
            "channel": channel.name,
            "target": describe(channel),
            "pending": state.pending,
            "last_success": None if state.last_success is None else rfc3339(state.last_success),
            "last_failure": None if state.last_failure is None else rfc3339(state.last_failure),
            "last_error": state.last_error,
        }
        for channel, state in zip(config.notify.channels, states, strict=True)
    ]


def _refused(store: AgentStore, pairing: str) -> dict[str, Any]:
    """How many answers of the server the agent refused as findings, and the latest finding."""
    refusals = store.refusals(pairing)
    last = refusals[-1] if refusals else None
    return {
        "count": len(refusals),
        "last": None if last is None else f"{last.finding.code}: {last.finding.message}",
        "last_at": None if last is None else rfc3339(last.refused_at),
    }


def _peer_snapshot(
    peer: PeerLookup | None, pairing: str, now: datetime, report: dict[str, Any] | None
) -> dict[str, Any]:
    """The peer's latest snapshot as the server holds it, or, offline, as the report names it."""
    if peer is None:
        version = None if report is None else report["peer_version"]
        return {"source": "latest report", "version": version}
    try:
        header = peer(pairing)
    except InvsyncError as e:
        return {"source": "server", "error": bounded(e, MESSAGE_CHARS)}
    if header is None:
        return {"source": "server", "version": None}
    return {
        "source": "server",
        "version": header.version,
        "issued_at": rfc3339(header.issued_at),
        "age_seconds": int((now - header.issued_at).total_seconds()),
        "expires_at": rfc3339(header.expires_at),
        "expired": header.expires_at <= now,
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


def _report(directory: Path, pairing: str, pins: Pins, party: str = "") -> dict[str, Any] | None:
    files = (
        [f for f in report_files(directory) if f.body.pairing == pairing]
        if directory.is_dir()
        else []
    )
    if not files:
        return None
    latest = files[-1]
    verification = verify_report(latest.envelope, pins)
    findings = latest.body.findings
    open_ = [f for f in findings if f.acknowledgement is None]
    sides = (latest.body.root, latest.body.subordinate)
    return {
        "id": latest.report_id,
        "peer_version": next((s.version for s in sides if s.party != party), None),
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
    except Refused as e:  # the server answered, and said no
        return f"refused: {bounded(e, MESSAGE_CHARS)}"
    except Exception as e:  # any other failure is the answer: the server cannot be reached
        return f"unreachable: {bounded(e, MESSAGE_CHARS)}"


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
        lines.append("  " + _peer_line(row["peer_snapshot"]))
        lines.append("  " + _report_line(row["report"]))
        if row["refused"]["count"]:
            refused = row["refused"]
            lines.append(
                f"  REFUSED: {refused['count']} answer(s) of the server, last at "
                f"{refused['last_at']}: {refused['last']}"
            )
        lines.append(f"  server: {row['server']}")
    if rows:
        lines += [_notify_line(channel) for channel in rows[0]["notifications"]]
    return "\n".join(lines) + "\n"


def _notify_line(channel: dict[str, Any]) -> str:
    line = f"notify {channel['channel']} ({channel['target']}): {channel['pending']} pending"
    line += f", last sent {channel['last_success'] or 'never'}"
    if channel["last_failure"] is not None:
        failed = channel["last_failure"]
        state = "FAILING" if failed > (channel["last_success"] or "") else "last failure"
        line += f"; {state} {failed}: {channel['last_error']}"
    return line


def _peer_line(peer: dict[str, Any]) -> str:
    if "error" in peer:
        return f"peer snapshot: cannot tell ({peer['error']})"
    if peer["version"] is None:
        return f"peer snapshot: none ({peer['source']})"
    if peer["source"] != "server":
        return f"peer snapshot: version {peer['version']} (in the latest report; --offline)"
    state = "EXPIRED" if peer["expired"] else f"expires {peer['expires_at']}"
    return f"peer snapshot: version {peer['version']}, {peer['age_seconds']} s old, {state}"


def _report_line(report: dict[str, Any] | None) -> str:
    if report is None:
        return "report: none written yet"
    signatures = ", ".join(f"{role} {status}" for role, status in report["signatures"].items())
    counts = "/".join(str(report["open"][s.value]) for s in Severity)
    return (
        f"report: {report['id'][:12]} as of {report['as_of']}; open error/warning/notice "
        f"{counts}, {report['acknowledged']} acknowledged; {signatures}"
    )
