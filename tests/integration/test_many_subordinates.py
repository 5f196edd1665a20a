"""A root with three subordinates in three pairings, as real processes (issue 14, item 4a).

SECOM's agent holds the real SECOM hierarchy (185 CA certificates from CCADB) and has three root
pairings, with JPRS, NII and Cybertrust, each picking its peer's certificates by subject
organization; each subordinate lists its own certificates (Cybertrust one fewer than SECOM
issued it, so its pairing has findings from the start; NII's has three too: unconstrained
certificates of keys that also have constrained ones). After a first round of all four
agents, NII drops one certificate from its inventory: the next round changes the secom-nii
report alone, and the server's reports of the two other pairings are the same bytes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from invsync.agent.model.record import sha256_hex
from invsync.agent.report.body import ReportBody
from invsync.server.localfed import server_process
from tests.integration.many_parties import (
    Pairing,
    Party,
    latest_reports,
    run_once,
    write_agents,
    write_files,
)
from tests.paths import SECOM_JPRS

pytestmark = pytest.mark.integration

ORGANIZATIONS = {
    "jprs": "Japan Registry Services Co., Ltd.",
    "nii": "National Institute of Informatics",
    "cybertrust": "Cybertrust Japan Co., Ltd.",
}
PAIRINGS = [
    Pairing(f"secom-{sub}", "secom", sub, "secom_roots.pem", (organization,))
    for sub, organization in ORGANIZATIONS.items()
]
NAMES = [p.name for p in PAIRINGS]
# NII's Open Domain CA G5 and G6 of 2018-2019 carry no constraint, their 2020 reissues of the same
# subject and key are name-constrained: the key issues without constraint through the old ones.
NII_UNCONSTRAINED = [
    ("doppelganger-inconsistent", sha)
    for sha in (
        "012BB72AAA11068FC84E276CA1D41E0D67D546B204F53C417EAF471047F67460",
        "76BD451EBB1A86332C608D9993878610831855717D7B9D6B82B3CDE7276E6B75",
        "80F5B0D16FAE8E72B9F1346FEDD78883D4A629D1382FBCFC694F54BFC1EEDD3C",
    )
]


def _hierarchy() -> list[x509.Certificate]:
    with warnings.catch_warnings():  # three SECOM roots have serial 0
        warnings.filterwarnings("ignore", "Parsed a serial number")
        return x509.load_pem_x509_certificates(
            (SECOM_JPRS / "secom_hierarchy_all_ccadb.pem").read_bytes()
        )


def _of(organization: str) -> list[x509.Certificate]:
    """The hierarchy's certificates with this subject organization, by fingerprint."""
    found = [
        cert
        for cert in _hierarchy()
        if any(
            a.value == organization
            for a in cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
        )
    ]
    return sorted(found, key=lambda c: sha256_hex(c.public_bytes(Encoding.DER)))


def _pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def _sha(cert: x509.Certificate) -> str:
    return sha256_hex(cert.public_bytes(Encoding.DER))


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    parties = [
        Party("secom", ("secom_hierarchy.pem",), PAIRINGS),
        *(Party(p.subordinate, (f"{p.subordinate}.pem",), [p]) for p in PAIRINGS),
    ]
    write_files(tmp_path, parties, PAIRINGS)
    data = tmp_path / "data"
    data.joinpath("secom_roots.pem").write_bytes(
        (SECOM_JPRS / "secom_roots_selfsigned.pem").read_bytes()
    )
    data.joinpath("secom_hierarchy.pem").write_bytes(
        (SECOM_JPRS / "secom_hierarchy_all_ccadb.pem").read_bytes()
    )
    for sub, organization in ORGANIZATIONS.items():
        listed = _of(organization)
        if sub == "cybertrust":
            listed = listed[1:]
        data.joinpath(f"{sub}.pem").write_bytes(_pem(listed))
    with server_process(tmp_path) as port:
        write_agents(tmp_path, parties, port)
        yield tmp_path, port


def _findings(body: ReportBody) -> list[tuple[str, str]]:
    return sorted((f.code, f.sha256) for f in body.findings)


def test_one_change_at_one_subordinate_changes_that_pairings_report_alone(
    federation: tuple[Path, int],
) -> None:
    work, port = federation
    assert [len(_of(o)) for o in ORGANIZATIONS.values()] == [16, 18, 12]
    outputs = run_once(work, ["secom", "jprs", "nii", "cybertrust"])
    for name in NAMES:
        assert f"secom: pushed {name} snapshot version 1" in outputs["secom"], outputs["secom"]
    first = latest_reports(work, "secom", port, NAMES)
    # The certificate Cybertrust leaves out shares subject and key with one it lists.
    left_out = _sha(_of(ORGANIZATIONS["cybertrust"])[0])
    assert {name: _findings(body) for name, (_, body) in first.items()} == {
        "secom-jprs": [],
        "secom-nii": NII_UNCONSTRAINED,
        "secom-cybertrust": [
            ("doppelganger-untracked", left_out),
            ("missing-at-subordinate", left_out),
        ],
    }
    for _, body in first.values():
        assert (body.root.version, body.subordinate.version) == (1, 1)

    # NII drops a certificate from its inventory; SECOM and the others change nothing.
    dropped, *kept = _of(ORGANIZATIONS["nii"])
    (work / "data" / "nii.pem").write_bytes(_pem(kept))
    outputs = run_once(
        work, ["nii", "secom", "jprs", "cybertrust"], after={"secom": "nii: pushed secom-nii"}
    )
    assert "nii: pushed secom-nii snapshot version 2" in outputs["nii"], outputs["nii"]
    for name in NAMES:
        assert f"secom: {name} unchanged since snapshot version 1" in outputs["secom"]

    second = latest_reports(work, "secom", port, NAMES)
    for name in ("secom-jprs", "secom-cybertrust"):
        assert second[name][0] == first[name][0], name  # the same report, byte for byte
    body = second["secom-nii"][1]
    assert (body.root.version, body.subordinate.version) == (1, 2)
    # NII's dropped certificate too shares subject and key with one it still lists.
    assert _sha(dropped) == NII_UNCONSTRAINED[0][1]  # still listed by SECOM, still inconsistent
    assert _findings(body) == sorted(
        [
            *NII_UNCONSTRAINED,
            *(
                (code, _sha(dropped))
                for code in ("disappeared", "doppelganger-untracked", "missing-at-subordinate")
            ),
        ]
    )
