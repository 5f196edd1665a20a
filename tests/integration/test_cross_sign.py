"""A subordinate whose key two roots certified, as real processes (issue 14, item 4b).

One subordinate CA key, a certificate for it from each of two roots (same subject and key), and
two pairings, root1-sub and root2-sub: each root's snapshot holds what that root signed, and
the subordinate's snapshot in each pairing holds both certificates of its key. Root 1 then
revokes its certificate for keyCompromise, root 2 does not: root1-sub flags root 2's
certificate of the compromised key (`doppelganger-untracked`, the subordinate acts), while the
root2-sub report stays as it was; once the subordinate records the revocation too, root2-sub
flags it as well. Certificates made with `cryptography` (tests/ca_chain.py), really signed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from invsync.agent.exchange.snapshot import decode_payload
from invsync.agent.model.record import sha256_hex
from invsync.agent.report.body import ReportBody
from invsync.server.localfed import server_process
from tests import ca_chain
from tests.integration.many_parties import (
    Pairing,
    Party,
    latest_reports,
    run_once,
    write_agents,
    write_files,
)

pytestmark = pytest.mark.integration

PAIRINGS = [
    Pairing("root1-sub", "root1", "sub", "root1.pem"),
    Pairing("root2-sub", "root2", "sub", "root2.pem"),
]
NAMES = [p.name for p in PAIRINGS]
REVOKED = "2025-05-01T00:00:00Z"  # before the reports' as_of, 2025-06-01


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[tuple[Path, int, dict[str, ca_chain.Ca]]]:
    root1 = ca_chain.root("Test Root One", "Root One Inc.")
    root2 = ca_chain.root("Test Root Two", "Root Two Inc.")
    key = ec.generate_private_key(ec.SECP256R1())
    cas = {
        "root1": root1,
        "root2": root2,
        "by-root1": ca_chain.issue(root1, "Test Sub CA", "Sub Inc.", key=key),
        "by-root2": ca_chain.issue(root2, "Test Sub CA", "Sub Inc.", key=key, serial=0x2222),
    }
    parties = [
        Party("root1", ("issuance-log:root1.jsonl",), [PAIRINGS[0]]),
        Party("root2", ("issuance-log:root2.jsonl",), [PAIRINGS[1]]),
        Party("sub", ("issuance-log:sub.jsonl",), PAIRINGS),
    ]
    write_files(tmp_path, parties, PAIRINGS)
    data = tmp_path / "data"
    for root in ("root1", "root2"):
        (data / f"{root}.pem").write_bytes(cas[root].pem)
        _log(data / f"{root}.jsonl", [(cas[f"by-{root}"], "sub", "")])
    _log(data / "sub.jsonl", [(cas["by-root1"], "", ""), (cas["by-root2"], "", "")])
    with server_process(tmp_path) as port:
        write_agents(tmp_path, parties, port)
        yield tmp_path, port, cas


def _log(path: Path, lines: list[tuple[ca_chain.Ca, str, str]]) -> None:
    """An issuance log: each certificate with its operator and, if given, a keyCompromise
    revocation at REVOKED."""
    rows = []
    for ca, operator, revoked in lines:
        row = {"certificate": ca.pem.decode()}
        if operator:
            row["operator"] = operator
        if revoked:
            row |= {"revoked_at": revoked, "revocation_reason": "keyCompromise"}
        rows.append(json.dumps(row) + "\n")
    path.write_text("".join(rows))


def _sha(ca: ca_chain.Ca) -> str:
    return sha256_hex(ca.der)


def _snapshots(work: Path) -> dict[tuple[str, str], set[str]]:
    """Each party's first snapshot in each pairing: the certificates it holds."""
    with sqlite3.connect(work / "state" / "server.db") as db:
        rows = db.execute(
            "select party, pairing, payload from snapshots where version = 1"
        ).fetchall()
    return {
        (party, pairing): {r.sha256 for r in decode_payload(bytes(payload)).records}
        for party, pairing, payload in rows
    }


def _findings(body: ReportBody) -> list[tuple[str, str, str]]:
    return sorted((f.code, f.sha256, f.party) for f in body.findings)


def test_a_key_compromise_revoked_at_one_root_only_is_flagged(
    federation: tuple[Path, int, dict[str, ca_chain.Ca]],
) -> None:
    work, port, cas = federation
    one, two = _sha(cas["by-root1"]), _sha(cas["by-root2"])
    run_once(work, ["root1", "root2", "sub"])
    assert _snapshots(work) == {
        ("root1", "root1-sub"): {one},
        ("root2", "root2-sub"): {two},
        ("sub", "root1-sub"): {one, two},
        ("sub", "root2-sub"): {one, two},
    }
    first = latest_reports(work, "sub", port, NAMES)
    assert {name: _findings(body) for name, (_, body) in first.items()} == {
        "root1-sub": [],
        "root2-sub": [],
    }

    # Root 1 revokes its certificate of the key for keyCompromise; root 2 does not.
    _log(work / "data" / "root1.jsonl", [(cas["by-root1"], "sub", REVOKED)])
    run_once(work, ["root1", "root2", "sub"], after={"sub": "root1: pushed root1-sub"})
    second = latest_reports(work, "sub", port, NAMES)
    assert _findings(second["root1-sub"][1]) == sorted(
        [
            ("doppelganger-untracked", two, "sub"),  # root 2's, of the compromised key
            ("status-mismatch", one, "sub"),  # the subordinate lists it unrevoked
        ]
    )
    (flagged,) = [f for f in second["root1-sub"][1].findings if f.sha256 == two]
    assert flagged.message.endswith(
        f"shares subject and key with {one[:16]}, revoked for a key reason, but neither root1 nor "
        "sub lists it as revoked; whoever holds the key can use it"
    )
    assert second["root2-sub"][0] == first["root2-sub"][0]  # nothing there told it yet

    # The subordinate records the revocation: root 2's pairing sees it through its snapshot.
    _log(
        work / "data" / "sub.jsonl",
        [(cas["by-root1"], "", REVOKED), (cas["by-root2"], "", "")],
    )
    run_once(
        work,
        ["sub", "root1", "root2"],
        after={"root1": "sub: pushed root1-sub", "root2": "sub: pushed root2-sub"},
    )
    third = latest_reports(work, "sub", port, NAMES)
    assert _findings(third["root1-sub"][1]) == [("doppelganger-untracked", two, "sub")]
    assert _findings(third["root2-sub"][1]) == [("doppelganger-untracked", two, "sub")]
