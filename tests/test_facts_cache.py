"""Derived facts kept in the agent's database (agent/store/facts_cache.py, issue 13): a fresh
process over the same database rebuilds every CertInfo, and knows every scope signature outcome,
without asking cryptography again; whatever it cannot use it derives again."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from invsync.agent.config.settings import load_agent_config
from invsync.agent.daemon.cycle import Agent
from invsync.agent.inventory import scope
from invsync.agent.inventory.scope import root_scope
from invsync.agent.model import record
from invsync.agent.model.derived import FORMAT, STORED
from invsync.agent.model.record import CertInfo, CertRecord, parse_certificate
from invsync.agent.model.signatures import signed_by
from invsync.agent.store import facts_cache
from invsync.agent.store.agent_store import AgentStore
from invsync.agent.store.db import transaction
from invsync.agent.store.facts_cache import FactsCache
from invsync.server.localfed import agent_config, write_federation
from tests.paths import DEMO, SECOM_JPRS

pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number")

JPRS_O = "Japan Registry Services Co., Ltd."


def _ders(path: Path) -> list[bytes]:
    return [
        c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(path.read_bytes())
    ]


# The demo's real certificates: both parties' PEM files, SECOM's roots among them.
DERS = [der for path in sorted(DEMO.glob("*.pem")) for der in _ders(path)]
ROOT_KEYS = [
    record._parse_certificate(der).spki_der
    for der in _ders(SECOM_JPRS / "secom_roots_selfsigned.pem")
]


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Each DER cryptography parses from here on; and no CertInfo alive before is shared."""
    calls: list[bytes] = []
    parse = record._parse_certificate

    def counted(der: bytes) -> CertInfo:
        calls.append(der)
        return parse(der)

    monkeypatch.setattr(record, "_parse_certificate", counted)
    monkeypatch.setattr(record, "_ALIVE", weakref.WeakValueDictionary())
    return calls


@pytest.fixture
def verifies(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Each certificate whose signature the scope verifies from here on, outcomes in memory
    forgotten (a fresh process)."""
    calls: list[bytes] = []

    def counted(cert: x509.Certificate, key: ec.EllipticCurvePublicKey) -> bool:
        calls.append(cert.public_bytes(Encoding.DER))
        return signed_by(cert, key)

    monkeypatch.setattr(scope, "signed_by", counted)
    monkeypatch.setattr(scope, "_SIGNED", {})
    return calls


@contextmanager
def _process(path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FactsCache]:
    """What one `agent run --once` process holds: a store, its cache installed, nothing alive
    or verified in memory; the cache closed (flushed), then the store, as the agent does."""
    monkeypatch.setattr(record, "_ALIVE", weakref.WeakValueDictionary())
    monkeypatch.setattr(scope, "_SIGNED", {})
    store = AgentStore(path)
    cache = FactsCache.install(store)
    try:
        yield cache
    finally:
        cache.close()
        store.close()


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with AgentStore(path) as store:
        return [tuple(row) for row in store.db.execute(sql).fetchall()]


def _execute(path: Path, sql: str, params: list[object]) -> None:
    with AgentStore(path) as store, transaction(store.db, "test"):
        store.db.execute(sql, params)


def test_a_fresh_process_rebuilds_every_certinfo_without_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parses: list[bytes]
) -> None:
    db = tmp_path / "agent.db"
    with _process(db, monkeypatch):
        first = [parse_certificate(der) for der in DERS]
    assert len(parses) == len(DERS) > 20
    assert len(_rows(db, "SELECT sha256 FROM derived_facts")) == len(DERS)
    parses.clear()
    with _process(db, monkeypatch):
        again = [parse_certificate(der) for der in DERS]
    assert parses == []
    assert again == first
    assert all(a is not b for a, b in zip(again, first, strict=True))  # rebuilt, not shared


def test_without_a_cache_installed_every_process_parses(
    monkeypatch: pytest.MonkeyPatch, parses: list[bytes]
) -> None:
    assert record._CACHE is None
    for der in DERS[:3]:
        parse_certificate(der)
    assert len(parses) == 3


def _corrupt(how: str, sha256: str, other: str) -> tuple[str, list[object]]:
    """SQL that spoils the row of `sha256` (`other` is another certificate's)."""
    set_facts = "UPDATE derived_facts SET facts = ? WHERE sha256 = ?"
    spoilers: dict[str, tuple[str, list[object]]] = {
        "garbage": (set_facts, ["\x00garbage", sha256]),
        "a blob": (set_facts, [b"\xff\x00", sha256]),
        "another certificate's": (
            "UPDATE derived_facts SET facts = (SELECT facts FROM derived_facts WHERE sha256 = ?)"
            " WHERE sha256 = ?",
            [other, sha256],
        ),
        "another format": (
            "UPDATE derived_facts SET facts = replace(facts, ?, '0 pickle') WHERE sha256 = ?",
            [FORMAT, sha256],
        ),
        "a flag as a string": (
            "UPDATE derived_facts SET facts = json_replace(facts, ?, '1') WHERE sha256 = ?",
            [f"$[{1 + STORED.index('is_ca')}]", sha256],
        ),
    }
    return spoilers[how]


@pytest.mark.parametrize(
    "how", ["garbage", "a blob", "another certificate's", "another format", "a flag as a string"]
)
def test_a_row_that_cannot_be_used_is_parsed_again_and_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parses: list[bytes], how: str
) -> None:
    db = tmp_path / "agent.db"
    with _process(db, monkeypatch):
        first = [parse_certificate(der) for der in DERS]
    spoilt, other = first[0], first[1]
    assert spoilt.is_ca  # so that "a flag as a string" has a flag to spoil
    _execute(db, *_corrupt(how, spoilt.sha256, other.sha256))
    parses.clear()
    with _process(db, monkeypatch):
        again = [parse_certificate(der) for der in DERS]
    assert parses == [spoilt.der]
    assert again == first
    parses.clear()
    with _process(db, monkeypatch):
        for der in DERS:
            parse_certificate(der)
    assert parses == []  # the row was written again, whole


def test_writes_wait_for_a_flush_outside_the_stores_transactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parses: list[bytes]
) -> None:
    db = tmp_path / "agent.db"
    with _process(db, monkeypatch) as cache:
        info = parse_certificate(DERS[0])
        assert cache.info(info.sha256, info.der) is info  # waiting, already served
        count = "SELECT count(*) FROM derived_facts"
        assert cache.store.db.execute(count).fetchone()[0] == 0
        with transaction(cache.store.db, "another write of the store"):
            cache.flush()
            assert cache.store.db.execute(count).fetchone()[0] == 0
        cache.flush()
        assert cache.store.db.execute(count).fetchone()[0] == 1


def test_a_certificate_that_does_not_parse_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "agent.db"
    with _process(db, monkeypatch), pytest.raises(ValueError, match="error parsing asn1 value"):
        parse_certificate(DERS[0][:-1])
    assert _rows(db, "SELECT count(*) FROM derived_facts") == [(0,)]


def _unrelated_key() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _jprs_scope(keys: list[bytes]) -> Callable[[], list[str]]:
    records = [
        CertRecord(parse_certificate(der)) for der in _ders(DEMO / "jprs_ca_certificates.pem")
    ]
    assert not any(r.info.self_issued for r in records)  # no self-signed check to count

    def scoped() -> list[str]:
        chosen = root_scope(
            records, issuer_spkis=keys, subordinate="jprs", subject_organizations=[JPRS_O]
        )
        return [r.sha256 for r in chosen]

    return scoped


def test_scope_signature_outcomes_are_kept_across_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verifies: list[bytes]
) -> None:
    db = tmp_path / "agent.db"
    scoped = _jprs_scope([_unrelated_key(), *ROOT_KEYS])
    with _process(db, monkeypatch):
        first = scoped()
    assert first and len(verifies) > len(first)
    outcomes = _rows(db, "SELECT signed, count(*) FROM signature_checks GROUP BY signed")
    assert outcomes == [(0, len(verifies) - len(first)), (1, len(first))]
    verifies.clear()
    with _process(db, monkeypatch):
        assert scoped() == first
    assert verifies == []


def test_a_signature_outcome_of_another_format_is_verified_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verifies: list[bytes]
) -> None:
    db = tmp_path / "agent.db"
    scoped = _jprs_scope(ROOT_KEYS)
    with _process(db, monkeypatch):
        first = scoped()
    checked = len(verifies)
    _execute(db, "UPDATE signature_checks SET format = 'cryptography 1.0'", [])
    verifies.clear()
    with _process(db, monkeypatch):
        assert scoped() == first
    assert len(verifies) == checked


def test_the_agent_installs_its_cache_and_flushes_it_after_the_cycle_and_on_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not after collecting: while the snapshot is pushed (agent.daemon.push, tested in
    tests/test_recent_snapshots.py), or at the cycle's end, or on close."""
    # A fresh process: a CertInfo other tests keep alive would be shared, never asked of the cache.
    monkeypatch.setattr(record, "_ALIVE", weakref.WeakValueDictionary())
    write_federation(tmp_path)
    (tmp_path / "jprs.toml").write_text(agent_config("jprs", 7443))
    agent = Agent(load_agent_config(tmp_path / "jprs.toml"))
    kept = "SELECT sha256 FROM derived_facts"
    try:
        assert record._CACHE is agent.facts and scope._KEPT is agent.facts
        assert agent.collect() > 0
        assert _rows(agent.config.database, kept) == []
        agent.end_cycle()
        collected = {row[0] for row in agent.store.db.execute(kept)}
        assert {r.sha256 for r in agent.store.inventory()} <= collected
        # A certificate met after the cycle (as a peer's snapshot brings) waits for close.
        late = parse_certificate(_ders(SECOM_JPRS / "secom_roots_selfsigned.pem")[0])
        assert late.sha256 not in collected
    finally:
        agent.close()
    assert record._CACHE is None and scope._KEPT is None
    assert (late.sha256,) in _rows(agent.config.database, kept)


@contextmanager
def _second_process(
    db: Path, monkeypatch: pytest.MonkeyPatch, parses: list[bytes]
) -> Iterator[tuple[FactsCache, list[CertInfo], list[str]]]:
    """DERS' facts kept by one process; the next one's cache, what was kept, and each row it
    then asks for one by one (none answered: the table read whole must serve)."""
    with _process(db, monkeypatch):
        kept = [parse_certificate(der) for der in DERS]
    parses.clear()
    with _process(db, monkeypatch) as cache:
        reads: list[str] = []
        monkeypatch.setattr(cache, "_read", lambda sql, *params: reads.append(params[0]))
        yield cache, kept, reads


def test_a_process_reads_the_table_whole_once_and_lets_go_what_two_flushes_did_not_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parses: list[bytes]
) -> None:
    with _second_process(tmp_path / "agent.db", monkeypatch, parses) as (cache, kept, reads):
        first = cache.info(kept[0].sha256, kept[0].der)
        assert first == kept[0] and reads == []  # from the table read whole
        cache.flush()
        assert cache.info(kept[0].sha256, kept[0].der) is first  # held: asked again
        cache.flush()
        assert cache.info(kept[0].sha256, kept[0].der) is first
        cache.flush()
        cache.flush()  # two flushes with no one asking: let go, the next ask reads the row
        assert cache.info(kept[0].sha256, kept[0].der) is None
        assert cache.info(kept[1].sha256, kept[1].der) is None  # the whole read is let go too
        assert reads == [kept[0].sha256, kept[1].sha256]
        cache.add_info(kept[1])
        assert cache.info(kept[1].sha256, kept[0].der) is None  # held, but for other bytes
    assert parses == []


def test_a_first_process_asks_no_row_of_its_empty_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parses: list[bytes]
) -> None:
    """Read whole and empty, the tables hold none of what a first collection meets: each
    certificate is parsed without a query (100,000 SELECTs at 100,000 certificates)."""
    with _process(tmp_path / "agent.db", monkeypatch) as cache:
        reads: list[str] = []
        monkeypatch.setattr(cache, "_read", lambda sql, *params: reads.append(params[0]))
        infos = [parse_certificate(der) for der in DERS]
        assert [cache.signed(info.sha256, "00" * 32) for info in infos] == [None] * len(DERS)
        assert reads == [] and len(parses) == len(DERS)


def test_flushes_while_pushing_keep_what_was_read_whole_for_the_next_pairings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parses: list[bytes]
) -> None:
    """A cycle pushes once per pairing, each push flushing what was derived (`age=False`):
    the rows read whole stay until the cycle's end ages them, or each later pairing's checks
    would ask row by row."""
    with _second_process(tmp_path / "agent.db", monkeypatch, parses) as (cache, kept, reads):
        assert cache.info(kept[0].sha256, kept[0].der) == kept[0]
        for _ in range(5):  # five pairings pushed
            cache.flush(age=False)
        assert cache.info(kept[1].sha256, kept[1].der) == kept[1]
        assert reads == [] and parses == []
        cache.flush()
        cache.flush()  # two cycle ends: what was not asked for is let go
        assert cache.info(kept[2].sha256, kept[2].der) is None
        assert reads == [kept[2].sha256]


def test_a_table_over_the_bound_is_read_row_by_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parses: list[bytes]
) -> None:
    db = tmp_path / "agent.db"
    with _process(db, monkeypatch):
        kept = [parse_certificate(der) for der in DERS[:3]]
    monkeypatch.setattr(facts_cache, "BULK_MAX_ROWS", 2)
    with _process(db, monkeypatch) as cache:
        read = cache._read
        reads: list[str] = []

        def counted(sql: str, *params: str) -> tuple[object, ...] | None:
            reads.append(params[0])
            return read(sql, *params)

        monkeypatch.setattr(cache, "_read", counted)
        assert [cache.info(info.sha256, info.der) for info in kept] == kept
        assert reads == [info.sha256 for info in kept]


def test_signature_outcomes_read_whole_outlast_the_collections_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verifies: list[bytes]
) -> None:
    """A cycle flushes after collecting and only then checks the scope: the outcomes read whole
    at its first ask must still be there, or each is read again row by row (100,000 SELECTs at
    100,000 certificates)."""
    db = tmp_path / "agent.db"
    with _process(db, monkeypatch):
        _jprs_scope(ROOT_KEYS)()
    rows = _rows(db, "SELECT sha256, spki_sha256, signed FROM signature_checks")
    stored = [(str(sha), str(spki), ok) for sha, spki, ok in rows]
    assert stored
    with _process(db, monkeypatch) as cache:
        reads: list[str] = []
        monkeypatch.setattr(cache, "_read", lambda sql, *params: reads.append(params[0]))
        cache.info(DERS[0].hex(), DERS[0])  # the first ask reads both tables whole
        cache.flush()  # the end of the collection
        outcomes = [cache.signed(sha, spki) for sha, spki, _ in stored]
        assert outcomes == [bool(ok) for _, _, ok in stored] and reads == []
        cache.flush()
        cache.flush()  # two more flushes: what was not asked for is let go
        assert cache.signed("00" * 32, stored[0][1]) is None and len(reads) == 1
