"""What a reload applies, what waits for a restart, and how each is said (issue 14, item 2):
server.live_config and agent.daemon.reload, on the demo federation's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from invsync.agent.config.settings import load_agent_config
from invsync.agent.daemon.config_watch import ConfigWatch
from invsync.agent.daemon.reload import Loaded, reloaded_config
from invsync.agent.daemon.reload import changes as agent_changes
from invsync.agent.errors import ConfigError
from invsync.server.config import load_server_config
from invsync.server.live_config import changes, live_parts, restart_keys
from invsync.server.localfed import agent_config, write_federation

NII_SERVER = """
[parties.nii]
tls_identity = "nii"
signing_keys = ["keys/jprs.pub"]

[pairings.secom-nii]
root = "secom"
subordinate = "nii"
report_schedule = "weekly"
"""

NII_AT_SECOM = """
[peers.nii]
signing_keys = ["keys/jprs.pub"]

[pairings.secom-nii]
role = "root"
peer = "nii"
issuer_certificates = ["data/secom_roots.pem"]
subject_organizations = ["National Institute of Informatics"]
"""


@pytest.fixture
def work(tmp_path: Path) -> Path:
    write_federation(tmp_path)
    (tmp_path / "secom.toml").write_text(agent_config("secom", 7443))
    return tmp_path


def test_a_party_and_pairing_added_are_live_and_named(work: Path) -> None:
    file = work / "server.toml"
    running = load_server_config(file)
    file.write_text(file.read_text() + NII_SERVER)
    new = load_server_config(file)
    parts = live_parts(new)
    assert parts.identities == {"secom": "secom", "jprs": "jprs", "nii": "nii"}
    assert set(parts.policy.pairings) == {"secom-jprs", "secom-nii"}
    assert parts.schedules == {"secom-jprs": "daily", "secom-nii": "weekly"}
    assert changes(running, new) == "parties +nii; pairings +secom-nii"
    assert changes(new, running) == "parties -nii; pairings -secom-nii"
    assert restart_keys(running, new) == []


def test_keys_bound_at_start_are_named_as_waiting_for_a_restart(work: Path) -> None:
    file = work / "server.toml"
    running = load_server_config(file)
    text = file.read_text().replace('listen = "127.0.0.1:0"', 'listen = "127.0.0.1:7444"')
    text = text.replace('cert = "tls/server.crt"', 'cert = "tls/secom.crt"')
    text = text.replace("[tls]", "[tls]\n", 1).replace(
        "[server]\n", "[server]\nmax_streams_per_party = 2\nmax_clock_skew_seconds = 60\n", 1
    )
    file.write_text(text)
    new = load_server_config(file)
    assert restart_keys(running, new) == [
        "server.listen",
        "server.max_streams_per_party",
        "tls.cert",
    ]
    assert changes(running, new) == "server.max_clock_skew_seconds"


def test_a_key_that_does_not_load_refuses_the_whole_file(work: Path) -> None:
    file = work / "server.toml"
    file.write_text(file.read_text() + NII_SERVER.replace("keys/jprs.pub", "keys/server.key"))
    with pytest.raises(ConfigError) as caught:
        live_parts(load_server_config(file))
    assert str(caught.value) == (
        f"{file}: parties.nii.signing_keys: public key {work / 'keys' / 'server.key'}: "
        "not a readable PEM public key"
    )


def test_an_agent_pairing_added_is_named_and_its_organizations_are_not_attribution(
    work: Path,
) -> None:
    file = work / "secom.toml"
    running = load_agent_config(file)
    file.write_text(file.read_text() + NII_AT_SECOM)
    new = reloaded_config(running)
    assert agent_changes(running, new) == "pairings +secom-nii; peers +nii"
    assert agent_changes(new, running) == "pairings -secom-nii; peers -nii"
    assert agent_changes(running, running) == (
        "no change to pairings, peers, sources, server or attribution"
    )


def test_another_party_or_database_is_refused_as_another_agent(work: Path) -> None:
    file = work / "secom.toml"
    running = load_agent_config(file)
    file.write_text(file.read_text().replace('database = "state/secom.db"', 'database = "x.db"'))
    with pytest.raises(ConfigError) as caught:
        reloaded_config(running)
    assert str(caught.value) == (
        f"{file}: agent.database changed from {work / 'state' / 'secom.db'} to {work / 'x.db'}: "
        "that is another agent; stop this one and start it"
    )


def test_an_unchanged_file_and_key_files_are_the_same_load_and_a_renewed_tls_key_is_not(
    work: Path,
) -> None:
    """A SIGHUP that only asks for a cycle keeps the running agent (and what it holds between
    cycles, which benchmarks/pairing.py --daemon measures); a TLS key replaced in place, at the
    same path, is a change to apply."""
    file = work / "secom.toml"
    first = Loaded.of(load_agent_config(file))
    assert Loaded.of(load_agent_config(file)) == first
    key = work / "tls" / "secom.key"
    key.write_bytes(key.read_bytes() + b"\n")
    assert Loaded.of(load_agent_config(file)) != first


def test_a_file_completed_after_a_half_written_one_was_seen_is_still_a_change(
    tmp_path: Path,
) -> None:
    """The daemons mark the file before loading it: a writer that finishes between the poll
    that saw half of it and the reload leaves a change for the next poll, not a miss."""
    file = tmp_path / "server.toml"
    file.write_text("[server]\nname = 'x'\n")
    watch = ConfigWatch(file)
    assert not watch.changed()
    file.write_text("[server]\nna")  # caught half-written
    assert watch.changed()
    watch.mark()  # the reload about to load it
    file.write_text("[server]\nname = 'y'\n")  # completed before the load
    assert watch.changed()
    assert not watch.changed()
    file.unlink()  # gone: a change, and one only
    assert watch.changed() and not watch.changed()
