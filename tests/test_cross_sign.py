"""A subordinate CA key certified by two roots (issue 14, item 4b), below the processes.

One key, two certificates (same subject and key, one from each root): each root's pairing sees
the certificate that root signed as the pairing's, and the other one through the subordinate's
snapshot, for `doppelganger-untracked` alone. Certificates made with `cryptography`
(tests/ca_chain.py), really signed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import ec

from invsync.agent.inventory.scope import subordinate_scope
from invsync.agent.model.findings import DOPPELGANGER_UNTRACKED, MISSING_AT_ROOT, Finding
from invsync.agent.model.record import CertRecord, Revocation
from invsync.agent.model.snapshot import Side, SnapshotHeader
from invsync.agent.reconcile.carry import reconcile_carried
from invsync.agent.reconcile.runner import reconcile
from tests import ca_chain
from tests.ct_helpers import spki
from tests.headers import header

AT = datetime(2021, 3, 1, tzinfo=UTC)
ROOT1 = ca_chain.root("Test Root One", "Root One Inc.")
ROOT2 = ca_chain.root("Test Root Two", "Root Two Inc.")
KEY = ec.generate_private_key(ec.SECP256R1())
BY_ROOT1 = ca_chain.record(ca_chain.issue(ROOT1, "Test Sub CA", "Sub Inc.", key=KEY), "sub")
BY_ROOT2 = ca_chain.record(
    ca_chain.issue(ROOT2, "Test Sub CA", "Sub Inc.", key=KEY, serial=0x2222), "sub"
)
ROOT2_ONLY = ca_chain.record(ca_chain.issue(ROOT2, "Test Sub CA 2", "Sub Inc."), "sub")


def _spki(ca: ca_chain.Ca) -> bytes:
    return spki(ca.key.public_key())


def _header(party: str, role: str, root: ca_chain.Ca) -> SnapshotHeader:
    return header(party, f"{party}-sub", AT, role=role, scope=(_spki(root),))


def _revoked(record: CertRecord, reason: str) -> CertRecord:
    revocation = Revocation(AT - timedelta(days=2), reason, "issuance-log:test")
    return replace(record, revocation=revocation)


def _pairing(
    root: ca_chain.Ca, party: str, root_records: list[CertRecord], *, header: bool = True
) -> tuple[Finding, ...]:
    """The pairing of `root` with the subordinate, which holds all three certificates."""
    held = [BY_ROOT1, BY_ROOT2, ROOT2_ONLY]
    sub = subordinate_scope(held, issuer_spkis=[_spki(root)])
    return reconcile(
        Side(party, root_records, header=_header(party, "root", root) if header else None),
        Side("sub", sub, header=_header("sub", "subordinate", root) if header else None),
        AT,
    )


def _codes(findings: tuple[Finding, ...]) -> list[tuple[str, str]]:
    return [(f.code, f.sha256) for f in findings]


def test_each_roots_pairing_holds_what_it_signed_and_the_other_of_the_one_key() -> None:
    held = [BY_ROOT1, BY_ROOT2, ROOT2_ONLY]
    assert subordinate_scope(held, issuer_spkis=[_spki(ROOT1)]) == [BY_ROOT1, BY_ROOT2]
    assert subordinate_scope(held, issuer_spkis=[_spki(ROOT2)]) == held
    # Both roots list what they signed: no finding in either pairing.
    assert _pairing(ROOT1, "one", [BY_ROOT1]) == ()
    assert _pairing(ROOT2, "two", [BY_ROOT2, ROOT2_ONLY]) == ()


def test_a_key_compromise_revoked_at_one_root_only_flags_the_other_roots_certificate() -> None:
    findings = _pairing(ROOT1, "one", [_revoked(BY_ROOT1, "keyCompromise")])
    flagged = [f for f in findings if f.code == DOPPELGANGER_UNTRACKED]
    assert [(f.sha256, f.party, f.severity.value) for f in flagged] == [
        (BY_ROOT2.sha256, "sub", "warning")
    ]
    assert flagged[0].message.endswith(
        f"shares subject and key with {BY_ROOT1.sha256[:16]}, revoked for a key reason, but "
        "neither one nor sub lists it as revoked; whoever holds the key can use it"
    )
    # The other root's certificate is no `missing-at-root` of this root's, nor untracked here.
    assert MISSING_AT_ROOT not in {f.code for f in findings}
    assert sorted(_codes(findings)) == [
        (DOPPELGANGER_UNTRACKED, BY_ROOT2.sha256),
        ("status-mismatch", BY_ROOT1.sha256),  # the subordinate lists it unrevoked
    ]
    # Once the subordinate records the revocation too, the other root's pairing sees it.
    sub_revoked = _revoked(BY_ROOT1, "keyCompromise")
    two = reconcile(
        Side("two", [BY_ROOT2, ROOT2_ONLY], header=_header("two", "root", ROOT2)),
        Side(
            "sub",
            subordinate_scope([sub_revoked, BY_ROOT2, ROOT2_ONLY], issuer_spkis=[_spki(ROOT2)]),
            header=_header("sub", "subordinate", ROOT2),
        ),
        AT,
    )
    assert _codes(two) == [(DOPPELGANGER_UNTRACKED, BY_ROOT2.sha256)]


def test_a_revocation_for_another_reason_is_a_reissue_and_no_finding() -> None:
    findings = _pairing(ROOT1, "one", [_revoked(BY_ROOT1, "superseded")])
    assert _codes(findings) == [("status-mismatch", BY_ROOT1.sha256)]


def test_without_the_roots_keys_the_other_certificate_is_not_told_apart() -> None:
    """Plain lists (no snapshot header): nothing says which keys are the root's, so the other
    root's certificate is one the subordinate lists and the root does not."""
    findings = _pairing(ROOT1, "one", [BY_ROOT1], header=False)
    assert (MISSING_AT_ROOT, BY_ROOT2.sha256) in _codes(findings)


def test_the_other_certificate_still_listed_has_not_disappeared() -> None:
    sub = tuple(subordinate_scope([BY_ROOT1, BY_ROOT2, ROOT2_ONLY], issuer_spkis=[_spki(ROOT1)]))
    findings = reconcile(
        Side("one", [BY_ROOT1], header=_header("one", "root", ROOT1), previous=(BY_ROOT1,)),
        Side("sub", sub, header=_header("sub", "subordinate", ROOT1), previous=sub),
        AT,
    )
    assert findings == ()


def test_carried_over_a_change_of_the_other_roots_certificate_finds_the_same() -> None:
    """A daemon carries its last reconciliation over (agent/reconcile/carry.py), comparing
    again only what changed. The subordinate revoking root 2's certificate changes a record
    that is not in the pairing's subordinate side: with a cross-signed certificate present,
    everything is compared, and the finding about it goes as `reconcile` says."""
    root = Side("one", [_revoked(BY_ROOT1, "keyCompromise")], header=_header("one", "root", ROOT1))

    def sub(*records: CertRecord) -> Side:
        scoped = subordinate_scope(records, issuer_spkis=[_spki(ROOT1)])
        return Side("sub", scoped, header=_header("sub", "subordinate", ROOT1))

    first = reconcile_carried(root, sub(BY_ROOT1, BY_ROOT2), AT, None)
    assert (DOPPELGANGER_UNTRACKED, BY_ROOT2.sha256) in _codes(first.findings)
    later = sub(BY_ROOT1, _revoked(BY_ROOT2, "keyCompromise"))
    again = reconcile_carried(root, later, AT, first.reconciled)
    assert again.findings == reconcile(root, later, AT)
    assert _codes(again.findings) == [("status-mismatch", BY_ROOT1.sha256)]
