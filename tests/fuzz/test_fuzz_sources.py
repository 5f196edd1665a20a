"""Every source reader (PEM, DER, PKCS#7, issuance log as JSONL and CSV, CCADB V5 records and PEM
report, audit scope, CRL, CT entries) fed mutated real files and arbitrary bytes: it returns
Facts or raises SourceError naming the file."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invsync.agent.model.bundle import SourceContext
from invsync.agent.model.record import parse_certificate
from invsync.agent.sources.registry import read_source
from tests import ct_helpers as ct
from tests.fuzz.mutation import hostile, value_or_own_error
from tests.fuzz.seeds import CRL_CA, DERS, source_seeds

SEEDS = source_seeds()
CTX = SourceContext(
    now=datetime(2021, 3, 1, tzinfo=UTC),
    issuers=tuple(parse_certificate(d) for d in [*DERS, CRL_CA]),
    party_ca_spkis=tuple(ct.SECOM_KEYS),
)
KIND = {
    "issuance-log-csv": "issuance-log",
    "ccadb-pems": "ccadb",
    "audit-scope-text": "audit-scope",
}


def read_one(entry: str, data: bytes, *, strict: bool = False) -> None:
    """Write `data` as a file of `entry`'s kind and read it through the registry (`strict`: no
    error at all may leave it)."""
    suffix, _ = SEEDS[entry]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzzed{suffix}"
        path.write_bytes(data)
        spec = f"{KIND.get(entry, entry)}:{path}"
        if strict:
            read_source(spec, CTX)
        else:
            value_or_own_error(entry, lambda: read_source(spec, CTX), path.name)


def _test(entry: str):  # type: ignore[no-untyped-def]
    @given(data=hostile(SEEDS[entry][1]))
    def test(data: bytes) -> None:
        read_one(entry, data)

    test.__name__ = f"test_fuzz_{entry.replace('-', '_')}_reader"
    return test


test_fuzz_pem_reader = _test("pem")
test_fuzz_der_reader = _test("der")
test_fuzz_pkcs7_reader = _test("pkcs7")
test_fuzz_issuance_log_reader = _test("issuance-log")
test_fuzz_issuance_log_csv_reader = _test("issuance-log-csv")
test_fuzz_ccadb_reader = _test("ccadb")
test_fuzz_ccadb_pems_reader = _test("ccadb-pems")
test_fuzz_audit_scope_reader = _test("audit-scope")
test_fuzz_audit_scope_text_reader = _test("audit-scope-text")
test_fuzz_crl_reader = _test("crl")
test_fuzz_ct_reader = _test("ct")


@pytest.mark.parametrize("entry", sorted(SEEDS))
def test_every_seed_reads_as_it_is(entry: str) -> None:
    """The seeds are real inputs: each reads without error, so mutations start from valid."""
    for data in SEEDS[entry][1]:
        read_one(entry, data, strict=True)


@given(entry=st.sampled_from(sorted(SEEDS)), data=st.binary(max_size=64))
def test_fuzz_tiny_inputs_of_every_kind(entry: str, data: bytes) -> None:
    read_one(entry, data)
