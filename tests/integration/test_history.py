"""Findings over time between real processes: JPRS acknowledges a bug-1695993 finding in its
config; the next cycle ends with a report both agents co-signed, the finding acknowledged, its
first_seen the first report's as_of, and a previous_report chain back to the first report."""

from __future__ import annotations

from pathlib import Path

import pytest

from invsync.agent.exchange.envelope import Envelope
from invsync.agent.report.body import ReportBody, parse_report_body, read_report_file, verify_report
from tests.integration.conftest import Federation
from tests.integration.test_exchange import (
    _latest_reports,
    _run_both_agents,
    _run_changed_then_peer,
)

pytestmark = pytest.mark.integration

OV_BUG = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
ACK = f"""
[[acknowledgements]]
code = "not-in-audit-scope"
sha256 = "{OV_BUG}"
reason = "revocation planned for 2021-04"
acknowledged_at = 2021-02-15T00:00:00Z
expires_at = 2021-04-30T00:00:00Z
"""


def _body(fed: Federation, rid: str) -> ReportBody:
    client = fed.client("secom")
    try:
        return parse_report_body(
            Envelope.from_pb(client.report("secom-jprs", rid).envelope).payload
        )
    finally:
        client.close()


def _only_report(paths: list[Path]) -> tuple[Envelope, ReportBody]:
    envs = [read_report_file(path) for path in paths]
    assert envs[0].payload == envs[1].payload
    return envs[0], parse_report_body(envs[0].payload)


def test_an_acknowledgement_and_first_seen_reach_a_report_both_agents_cosigned(
    federation: Federation,
) -> None:
    _run_both_agents(federation)
    _, first = _only_report(sorted((federation.work / "reports").glob("*/*.report.json")))
    (finding,) = [f for f in first.findings if (f.code, f.sha256) == ("not-in-audit-scope", OV_BUG)]
    assert (finding.party, finding.acknowledgement, finding.first_seen) == (
        "jprs",
        None,
        first.as_of,
    )

    jprs = federation.work / "jprs.toml"
    jprs.write_text(jprs.read_text() + ACK)
    _run_changed_then_peer(federation, changed="jprs", peer="secom")
    env, last = _only_report(_latest_reports(federation))
    assert verify_report(env).complete, verify_report(env).describe()
    # Only JPRS's snapshot changed (the acknowledgement travels in it): SECOM's version 1 stays.
    assert (last.root.version, last.subordinate.version) == (1, 2)

    (acked,) = [f for f in last.findings if (f.code, f.sha256) == ("not-in-audit-scope", OV_BUG)]
    assert acked.acknowledgement is not None
    assert (acked.acknowledgement.party, acked.acknowledgement.reason) == (
        "jprs",
        "revocation planned for 2021-04",
    )
    assert acked.first_seen == first.as_of
    others = [f for f in last.findings if f is not acked]
    assert all(f.acknowledgement is None for f in others)

    chain: list[str] = []
    rid = last.previous_report
    while rid is not None and rid != first.report_id and len(chain) < 5:
        chain.append(rid)
        rid = _body(federation, rid).previous_report
    assert rid == first.report_id, chain
