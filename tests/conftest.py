"""Fixtures shared across test files, defined once (tests/integration/conftest.py adds the real
server process). Keys are made once per session: generating them is the slow part, and a fixed
set keeps key ids stable within a run."""

from __future__ import annotations

import os as _os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck as _HealthCheck
from hypothesis import settings as _hypothesis_settings

from invsync.agent.exchange import delta
from invsync.agent.exchange import keys as signing_keys
from invsync.agent.exchange.keys import SigningKey, generate
from invsync.agent.model.record import CertRecord
from invsync.server.localfed import PARTIES, agent_config, write_federation
from tests.certs import cert_infos
from tests.exchange_rig import Keys, Rig, make_rig
from tests.log_watch_helpers import AgentSide, agent_side

CONFIG_PORT = 7443  # written into configurations that no test starts a server for


@pytest.fixture(scope="session")
def jprs_records() -> tuple[CertRecord, ...]:
    """JPRS's 16 real intermediate CA certificates (every generation), as plain records."""
    return tuple(CertRecord(info) for info in cert_infos("jprs_intermediates_all_generations.pem"))


@pytest.fixture
def records(jprs_records: tuple[CertRecord, ...]) -> list[CertRecord]:
    """A fresh list of `jprs_records` for each test, so that no test sees another's edits."""
    return list(jprs_records)


@pytest.fixture(scope="session")
def all_keys() -> dict[str, SigningKey]:
    """One signing key of every kind invsync supports (Ed25519, ECDSA P-256 and P-384)."""
    return {kind: signing_keys.generate(kind) for kind in signing_keys.KINDS}


@pytest.fixture(scope="session")
def keys() -> Keys:
    """The exchange rig's keys; SECOM's is ECDSA, so both key kinds meet in one exchange."""
    return Keys(
        server=generate(), secom=generate("ecdsa-p256"), jprs=generate(), stranger=generate()
    )


@pytest.fixture
def fed(tmp_path: Path) -> Path:
    """The demo federation's files (TLS, keys, data, server.toml) and both agents'
    configurations in tmp_path, for tests that read or break a configuration."""
    write_federation(tmp_path)
    for party in PARTIES:
        (tmp_path / f"{party}.toml").write_text(agent_config(party, CONFIG_PORT))
    return tmp_path


@pytest.fixture
def rig(tmp_path: Path, keys: Keys) -> Iterator[Rig]:
    """A real in-process exchange (tests/exchange_rig.py) on a fresh server database."""
    made = make_rig(tmp_path / "server.db", keys)
    yield made
    made.store.close()


@pytest.fixture
def secom(tmp_path: Path, rig: Rig, keys: Keys) -> Iterator[AgentSide]:
    """SECOM's side of `rig`'s log (tests/log_watch_helpers.py) on a fresh agent database."""
    side = agent_side(tmp_path / "secom.db", rig, keys, "secom")
    yield side
    side.store.close()


# Fuzz profiles (tests/fuzz, docs/testing.md): `ci` bounded, the default; INVSYNC_FUZZ=long for a
# campaign (INVSYNC_FUZZ_EXAMPLES inputs per test). Tests that set max_examples keep their own.
_hypothesis_settings.register_profile(
    "ci", max_examples=600, deadline=None, suppress_health_check=[_HealthCheck.too_slow]
)
_hypothesis_settings.register_profile(
    "long",
    max_examples=int(_os.environ.get("INVSYNC_FUZZ_EXAMPLES", "100000")),
    deadline=None,
    suppress_health_check=list(_HealthCheck),
)
_hypothesis_settings.load_profile("long" if _os.environ.get("INVSYNC_FUZZ") == "long" else "ci")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Each payload read as parts (`delta.read_parts`) from here on: decoded, or built on."""
    seen: list[bytes] = []
    real = delta.read_parts

    def counted(data: bytes, *args: object) -> delta.Parts:
        seen.append(data)
        return real(data, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(delta, "read_parts", counted)
    return seen
