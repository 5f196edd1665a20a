"""Attribution by the issuer key of a root pairing's subordinate, and of CT pre-certificates
like their certificates (issue 14, item 3).

Nobody here holds JPRS's CA key, and no certificate of the real SECOM hierarchy is signed by
any key but a SECOM root's (checked below), so the chains signed by a subordinate's key are
made with `cryptography` (tests/ca_chain.py), really signed.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from invsync.agent.inventory.attribution import Attribution, AttributionRule, attribute
from invsync.agent.inventory.issuer_attribution import issuer_key_votes
from invsync.agent.model.findings import ATTRIBUTION_CONFLICT
from invsync.agent.model.record import CertRecord, parse_certificate
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile.runner import reconcile
from tests import ca_chain
from tests.ca_chain import Ca, issue, record
from tests.headers import header
from tests.paths import SECOM_JPRS

JPRS_O, OTHER_O = "Japan Registry Services Co., Ltd.", "Example Relying CA"
AT = datetime(2021, 3, 1, tzinfo=UTC)
SUBORDINATES = Attribution(subordinates=frozenset({"jprs", "nii"}))


def _hierarchy() -> dict[str, Ca]:
    """A root; JPRS's CA under it; under JPRS's key a sub-CA (with an AKI), a sub-sub-CA (with
    none: found by name), a cross-certificate for another root's key (and a CA that root
    issued); and a certificate that names JPRS's CA as its issuer but is signed by another
    key."""
    secom = ca_chain.root("Test SECOM Root", "SECOM Trust Systems CO.,LTD.")
    other = ca_chain.root("Test Other Root", OTHER_O)
    jprs = issue(secom, "Test JPRS CA", JPRS_O)
    sub = issue(jprs, "Test JPRS Issuing CA", OTHER_O)
    impostor = Ca(jprs.name, other.key, jprs.cert)  # JPRS's name, another key
    return {
        "secom": secom,
        "other": other,
        "jprs": jprs,
        "sub": sub,
        "subsub": issue(sub, "Test JPRS Issuing CA 2", OTHER_O, aki=False),
        "cross": issue(jprs, "Test Other Root", OTHER_O, key=other.key),
        "other-issued": issue(other, "Test Other CA", OTHER_O),
        "forged": issue(impostor, "Test Forged CA", OTHER_O, aki=False),
        "secom-issued": issue(secom, "Test SECOM CA", "SECOM Trust Systems CO.,LTD."),
    }


def _operators(records: list[CertRecord], cas: dict[str, Ca]) -> dict[str, tuple[str, str]]:
    by_sha = {r.sha256: r for r in records}
    found = {}
    for label, ca in cas.items():
        held = by_sha[record(ca).sha256]
        found[label] = (held.operator or "", held.attribution)
    return found


def test_a_certificate_signed_by_a_subordinates_key_is_that_subordinates() -> None:
    cas = _hierarchy()
    # JPRS's CA is attributed by the root's issuance log; the rest by nothing of its own.
    records = [record(ca, "jprs" if label == "jprs" else None) for label, ca in cas.items()]
    assert _operators(attribute(records, SUBORDINATES), cas) == {
        "secom": ("", ""),
        "other": ("", ""),
        "jprs": ("jprs", "issuance-log"),
        "sub": ("jprs", "issuer-key"),
        "subsub": ("jprs", "issuer-key"),  # down the chain, its issuer found by name
        "cross": ("jprs", "issuer-key"),
        # The key JPRS cross-certified has its own self-signed root, of no operator: what it
        # signs is not JPRS's.
        "other-issued": ("", ""),
        "forged": ("", ""),  # names JPRS's CA as issuer; its signature decides: not JPRS's key
        "secom-issued": ("", ""),  # the root's own key is no subordinate's
    }
    # Not a subordinate of a root pairing: its keys attribute nothing.
    assert _operators(attribute(records, Attribution()), cas)["sub"] == ("", "")


def test_order_of_the_inventory_does_not_matter() -> None:
    cas = _hierarchy()
    records = [record(ca, "jprs" if label == "jprs" else None) for label, ca in cas.items()]
    forward = _operators(attribute(records, SUBORDINATES), cas)
    assert _operators(attribute(records[::-1], SUBORDINATES), cas) == forward


def test_the_issuer_key_disagreeing_is_a_conflict_naming_both_rules() -> None:
    cas = _hierarchy()
    sub = record(cas["sub"])
    rule = AttributionRule(operator="nii", sha256=frozenset({sub.sha256}))
    attribution = Attribution(rules=(rule,), subordinates=frozenset({"jprs", "nii"}))
    records = [record(cas["jprs"], "jprs"), sub]
    attributed = attribute(records, attribution)
    assert (attributed[1].operator, attributed[1].attribution) == (
        "nii",
        "rule:fingerprint; conflicting: issuer-key says jprs",
    )
    # Attributed again (read back from the store), it keeps one conflict.
    assert attribute(attributed, attribution) == attributed
    root = header("secom", "secom-nii", AT)
    findings = reconcile(Side("secom", [attributed[1]], header=root), Side("nii", ()), AT)
    (conflict,) = [f for f in findings if f.code == ATTRIBUTION_CONFLICT]
    assert conflict.message.endswith(
        "to nii by rule:fingerprint, but issuer-key says jprs: its sources disagree on who "
        "holds its key"
    )


def test_the_real_secom_hierarchy_has_no_certificate_under_a_subordinates_key() -> None:
    """Every one of the 185 is signed by a SECOM root's key; with JPRS's and NII's
    certificates attributed to them, their keys sign none of the others: no vote at all."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Parsed a serial number")
        certs = x509.load_pem_x509_certificates(
            (SECOM_JPRS / "secom_hierarchy_all_ccadb.pem").read_bytes()
        )
        infos = [parse_certificate(c.public_bytes(Encoding.DER)) for c in certs]
    operators = {JPRS_O: "jprs", "National Institute of Informatics": "nii"}
    records = [
        CertRecord(
            info,
            operator=next(
                (operators[o] for o in info.subject_organizations if o in operators), None
            ),
        )
        for info in infos
    ]
    assert sum(1 for r in records if r.operator) == 34
    assert issuer_key_votes(records, {"jprs", "nii"}) == []


def test_a_subordinates_cross_certificate_to_the_agents_own_root_key_takes_nothing() -> None:
    """JPRS cross-certifies SECOM's root key, and SECOM's agent holds no self-signed
    certificate of that root (an issuance log lists what the root issued, not the root):
    the root's key is the agent's own, never JPRS's, so what it signed stays as it was."""
    cas = _hierarchy()
    cas["cross-to-root"] = issue(
        cas["jprs"], "Test SECOM Root", "SECOM Trust Systems CO.,LTD.", key=cas["secom"].key
    )
    held = {label: ca for label, ca in cas.items() if label not in ("secom", "other")}
    records = [record(ca, "jprs" if label == "jprs" else None) for label, ca in held.items()]
    root = (
        cas["secom"].cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    found = _operators(attribute(records, SUBORDINATES, [root]), held)
    assert found["cross-to-root"] == ("jprs", "issuer-key")  # JPRS issued it, JPRS tracks it
    assert found["secom-issued"] == ("", "")
    assert found["jprs"] == ("jprs", "issuance-log")
    # Without the agent's root keys, JPRS's cross-certificate took the root's key, and with it
    # everything the root signed: the fault this guards against.
    unguarded = _operators(attribute(records, SUBORDINATES), held)
    assert unguarded["secom-issued"] == ("jprs", "issuer-key")
