"""Benchmark: the CT reader against the raw floor of its own input (issue 13, item 5).

    .venv/bin/python benchmarks/ct_reader.py [--entries 50000] [--runs 5] [--workdir DIR]
        [--layout lines|document]

Writes (once; later runs reuse it from DIR, default $TMPDIR/invsync-ct-bench) a file of N RFC
6962 get-entries entries: JSON Lines of 256-entry responses (`lines`, what a log's batches saved
one per line look like) or one response (`document`). The entries repeat a small set of
certificates made with `cryptography` under fresh leaf timestamps: per 1,000 entries, 599
precert_entry and 399 x509_entry of end-entity certificates (SANs, SCTs or the poison, AIA, CRL
distribution points, policies) issued by an intermediate outside the party, 1 CA certificate
the party's root signed (kept), 1 CA certificate another root signed (checked, dropped). Every
extra_data carries the issuing chain, as logs serve it.

Then, --runs times, alternating which goes first, it times over that file:
- the floor: reading the file, `json.loads` of it (or of each line), base64 of every leaf_input
  and extra_data, SHA-256 of every decoded leaf: work no reader of this input can avoid;
- the reader: `load_ct_entries(path, ctx)`, the function the source registry calls for `ct`.

Prints one JSON object: entries/s of each run and their medians, `ratio` = reader median /
floor median, what the reader returned (checked against what the file holds), and versions.
"""

from __future__ import annotations

import argparse
import binascii
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cryptography
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    NameOID,
    ObjectIdentifier,
)

import invsync.agent.sources.ct as ct_module
from invsync.agent.model.bundle import SourceContext
from invsync.agent.sources.ct import load_ct_entries
from invsync.agent.sources.reading import DEFAULT_MAX_SOURCE_BYTES, source_size_cap

FORMAT = "v1"  # bump when the generated file changes, so a cached one is not reused
NOW = datetime(2025, 3, 1, tzinfo=UTC)
TIMESTAMP_MS = 1_740_787_200_000  # 2025-03-01T00:00:00Z
BATCH = 256  # entries per get-entries response, as logs commonly cap them
DISTINCT = 64  # distinct end-entity certificates of each kind, repeated
SCT_OID = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
Issuer = tuple[x509.Certificate, rsa.RSAPrivateKey]
SubjectKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    folder = args.workdir / f"ct-{args.layout}-{args.entries}-{FORMAT}"
    if not (folder / "entries.json").exists():
        _generate(folder, args.entries, args.layout)
    result = _benchmark(folder, args.runs)
    print(json.dumps({"layout": args.layout, **result}, indent=2))
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=50_000, help="entries (default 50000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "invsync-ct-bench",
        help="where the generated file is kept and reused",
    )
    parser.add_argument("--layout", choices=("lines", "document"), default="lines")
    return parser.parse_args(argv)


# --- measuring


def _benchmark(folder: Path, runs: int) -> dict[str, object]:
    path = folder / "entries.json"
    meta = json.loads((folder / "meta.json").read_text())
    ctx = SourceContext(now=NOW, party_ca_spkis=(bytes.fromhex(meta["party_spki"]),))
    floor: list[float] = []
    reader: list[float] = []
    for run in range(runs):
        # Alternating the order spreads the machine's drift over both.
        pair = [(floor, lambda: _floor(path)), (reader, lambda: _read(path, ctx, meta))]
        for figures, measure in pair if run % 2 == 0 else reversed(pair):
            figures.append(meta["entries"] / _seconds(measure))
    return {
        "entries": meta["entries"],
        "file_bytes": path.stat().st_size,
        "kept": meta["kept"],
        "runs": runs,
        "floor_entries_per_s": _summary(floor),
        "reader_entries_per_s": _summary(reader),
        "ratio": round(statistics.median(reader) / statistics.median(floor), 3),
        "reader_code": _code_digest(),
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {_cpu_model()}",
    }


def _seconds(measure: Callable[[], object]) -> float:
    start = time.perf_counter()
    measure()
    return time.perf_counter() - start


def _floor(path: Path) -> int:
    """JSON, base64 and a hash of each leaf: the least any reader of the file must do."""
    done = 0
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.isspace():  # `strip()` would copy the line
                # Passed on, not bound: each response is freed before the next line is parsed,
                # so that its memory is reused, as the reader does.
                done += _floor_entries(json.loads(line)["entries"])
    return done


def _floor_entries(entries: list[dict[str, str]]) -> int:
    for entry in entries:
        leaf = binascii.a2b_base64(entry["leaf_input"], strict_mode=True)
        binascii.a2b_base64(entry["extra_data"], strict_mode=True)
        hashlib.sha256(leaf).digest()
    return len(entries)


def _read(path: Path, ctx: SourceContext, meta: dict[str, int]) -> None:
    # Beyond about 53,000 entries the file outgrows the default source size cap.
    with source_size_cap(max(path.stat().st_size, DEFAULT_MAX_SOURCE_BYTES)):
        facts = load_ct_entries(path, ctx)
    # A fast reader that keeps the wrong certificates measures nothing.
    if len(facts.records) != meta["kept"] or facts.skipped:
        kept, expected = len(facts.records), meta["kept"]
        raise SystemExit(f"reader kept {kept}, expected {expected}; {facts.skipped[:3]}")


def _summary(figures: Sequence[float]) -> dict[str, object]:
    return {
        "median": round(statistics.median(figures)),
        "all": [round(f) for f in figures],
    }


def _code_digest() -> str:
    """Which reader ran: a digest of the CT modules' source, to tell two checkouts apart."""
    folder = Path(ct_module.__file__).parent
    digest = hashlib.sha256()
    for name in sorted(p.name for p in folder.glob("ct*.py")):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:12]


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown CPU"
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")


# --- the file


def _generate(folder: Path, count: int, layout: str) -> None:
    party_root, party_key = _root("Bench Party Root CA")
    other_root, other_key = _root("Bench Other Root CA")
    issuing_key = _rsa()
    issuing = _ca("Bench Other Issuing CA", (other_root, other_key), issuing_key), issuing_key
    # The end-entity subjects share four keys: their names and serials differ.
    keys: list[SubjectKey] = [_ec(), _ec(), _ec(), _rsa()]
    final = [_leaf(i, issuing, keys[i % 4], precert=False) for i in range(DISTINCT)]
    pre = [_leaf(i, issuing, keys[i % 4], precert=True) for i in range(DISTINCT)]
    party_cas = [_ca(f"Bench Party Sub CA {i}", (party_root, party_key), _ec()) for i in range(4)]
    issuer_hash = hashlib.sha256(_spki(issuing[0])).digest()
    ee_chain = _chain([issuing[0], other_root])
    entries: list[dict[str, str]] = []
    for index in range(count):
        slot, stamp = index % 1000, TIMESTAMP_MS + index
        if slot == 500:  # kept
            cert = party_cas[index % len(party_cas)]
            entries.append(_x509_entry(cert, stamp, _chain([party_root])))
        elif slot == 999:  # a CA, but not the party's
            entries.append(_x509_entry(issuing[0], stamp, _chain([other_root])))
        elif slot % 5 < 3:  # 599 of 1,000 (the 600th is slot 500)
            entries.append(_precert_entry(pre[index % DISTINCT], issuer_hash, stamp, ee_chain))
        else:
            entries.append(_x509_entry(final[index % DISTINCT], stamp, ee_chain))
    kept = sum(1 for index in range(count) if index % 1000 == 500)
    _write(folder, entries, layout, {"kept": kept, "party_spki": _spki(party_root).hex()})


def _write(
    folder: Path, entries: list[dict[str, str]], layout: str, meta: dict[str, object]
) -> None:
    """Into a temporary folder renamed at the end: an interrupted run leaves no half file."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name + ".tmp"))
    with (temporary / "entries.json").open("w", encoding="utf-8") as f:
        if layout == "document":
            f.write(json.dumps({"entries": entries}) + "\n")
        for start in range(0, len(entries), BATCH) if layout == "lines" else ():
            f.write(json.dumps({"entries": entries[start : start + BATCH]}) + "\n")
    (temporary / "meta.json").write_text(json.dumps({**meta, "entries": len(entries)}))
    temporary.rename(folder)


def _x509_entry(cert: x509.Certificate, stamp: int, chain: bytes) -> dict[str, str]:
    leaf = _header(stamp, 0) + _vector(_der(cert), 3) + _vector(b"", 2)
    return {"leaf_input": _b64(leaf), "extra_data": _b64(chain)}


def _precert_entry(
    precert: x509.Certificate, issuer_hash: bytes, stamp: int, chain: bytes
) -> dict[str, str]:
    leaf = _header(stamp, 1) + issuer_hash + _vector(precert.tbs_certificate_bytes, 3)
    extra = _vector(_der(precert), 3) + chain
    return {"leaf_input": _b64(leaf + _vector(b"", 2)), "extra_data": _b64(extra)}


def _header(stamp: int, entry_type: int) -> bytes:
    return b"\x00\x00" + stamp.to_bytes(8, "big") + entry_type.to_bytes(2, "big")


def _chain(certs: Sequence[x509.Certificate]) -> bytes:
    return _vector(b"".join(_vector(_der(c), 3) for c in certs), 3)


def _vector(data: bytes, length_bytes: int) -> bytes:
    return len(data).to_bytes(length_bytes, "big") + data


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode()


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- the certificates


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _ec() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bench Trust Services"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _root(name: str) -> Issuer:
    key = _rsa()
    cert = (
        _builder(_name(name), _name(name), key.public_key(), serial=1, days=7300)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _ca(
    name: str, issuer: Issuer, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
) -> x509.Certificate:
    builder = _builder(_name(name), issuer[0].subject, key.public_key(), serial=2, days=3650)
    return _common(builder, issuer[0], 0).sign(issuer[1], hashes.SHA256())


def _leaf(
    number: int,
    issuer: Issuer,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    *,
    precert: bool,
) -> x509.Certificate:
    host = f"www{number}.bench-{number % 7}.example.jp"
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    names = [x509.DNSName(host), *(x509.DNSName(f"alt{k}.{host}") for k in range(number % 5))]
    builder = _common(
        _builder(subject, issuer[0].subject, key.public_key(), serial=10**20 + number, days=90),
        issuer[0],
        None,
    ).add_extension(x509.SubjectAlternativeName(names), critical=False)
    if precert:
        builder = builder.add_extension(x509.PrecertPoison(), critical=True)
    else:
        builder = builder.add_extension(_scts(number), critical=False)
    return builder.sign(issuer[1], hashes.SHA256())


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    *,
    serial: int,
    days: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(serial)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
    )


def _common(
    builder: x509.CertificateBuilder, issuer: x509.Certificate, path_length: int | None
) -> x509.CertificateBuilder:
    """The extensions a subordinate CA's and a server certificate's have alike."""
    ca = path_length is not None
    issuer_key = issuer.public_key()
    assert isinstance(issuer_key, rsa.RSAPublicKey)
    access = x509.AccessDescription(
        AuthorityInformationAccessOID.CA_ISSUERS,
        x509.UniformResourceIdentifier("http://repo.bench.example/issuer.crt"),
    )
    ocsp = x509.AccessDescription(
        AuthorityInformationAccessOID.OCSP,
        x509.UniformResourceIdentifier("http://ocsp.bench.example"),
    )
    crl = x509.DistributionPoint(
        [x509.UniformResourceIdentifier("http://crl.bench.example/ca.crl")], None, None, None
    )
    usage = _ca_usage() if ca else _leaf_usage()
    return (
        builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False
        )
        .add_extension(x509.AuthorityInformationAccess([ocsp, access]), critical=False)
        .add_extension(x509.CRLDistributionPoints([crl]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(ObjectIdentifier("2.23.140.1.2.1"), None)]
            ),
            critical=False,
        )
    )


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(False, False, False, False, False, True, True, False, False)


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(True, False, True, False, False, False, False, False, False)


def _scts(number: int) -> x509.UnrecognizedExtension:
    """Two embedded SCTs (RFC 6962 §3.3), as a final certificate carries them: cryptography
    parses them when it reads the certificate's extensions."""
    scts = b""
    for log in range(2):
        signature = bytes([0x30, 0x45]) + bytes(range(number % 50, number % 50 + 69))
        sct = (
            b"\x00"
            + hashlib.sha256(f"log {log}".encode()).digest()
            + (TIMESTAMP_MS - 1000 * log).to_bytes(8, "big")
            + b"\x00\x00"
            + b"\x04\x03"  # sha256, ecdsa
            + _vector(signature, 2)
        )
        scts += _vector(sct, 2)
    listed = _vector(scts, 2)
    # extnValue's content is itself a DER OCTET STRING holding the TLS-encoded list.
    return x509.UnrecognizedExtension(SCT_OID, b"\x04" + _der_length(len(listed)) + listed)


def _der_length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


if __name__ == "__main__":
    sys.exit(main())
