"""The agent's and the server's TOML configurations: every check, with its exact message.

Each test builds the demo federation (TLS files, keys, data, server.toml) in tmp_path with
`server.localfed`, writes the demo agent configurations beside it and breaks one thing.
The last tests keep docs/configuration.md in step with what the loaders accept.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from invsync.agent.config import inventory as config_inventory_module
from invsync.agent.config import notify as config_notify_module
from invsync.agent.config import settings as agent_config_module
from invsync.agent.config.settings import load_agent_config
from invsync.agent.daemon.cycle import Agent
from invsync.agent.errors import ConfigError
from invsync.agent.exchange.backoff import RetryPolicy
from invsync.agent.exchange.federation_ca import crl_of
from invsync.agent.exchange.keepalive import Keepalive
from invsync.agent.exchange.keys import generate, write_private_key
from invsync.agent.exchange.pki import new_ca
from invsync.server import config as server_config_module
from invsync.server.config import load_server_config
from invsync.server.live_config import policy_of
from tests.paths import ROOT

DOC = ROOT / "docs" / "configuration.md"
PORT = 7443


def _edit(file: Path, old: str, new: str) -> Path:
    text = file.read_text()
    assert old in text, f"{old!r} not in {file}"
    file.write_text(text.replace(old, new, 1))
    return file


def _fails(load: Callable[[Path], object], file: Path, message: str) -> None:
    """`load(file)` raises ConfigError with exactly `file: message`."""
    with pytest.raises(ConfigError, match=f"^{re.escape(f'{file}: {message}')}$"):
        load(file)


def _server_fails(fed: Path, message: str) -> None:
    _fails(load_server_config, fed / "server.toml", message)


def _agent_fails(fed: Path, message: str, party: str = "secom") -> None:
    _fails(load_agent_config, fed / f"{party}.toml", message)


# --- the server ---------------------------------------------------------------------------------


def test_the_demo_server_config_loads(fed: Path) -> None:
    config = load_server_config(fed / "server.toml")
    assert config.name == "demo-exchange"
    assert config.listen == "127.0.0.1:0"
    assert config.database == fed / "state" / "server.db"
    assert config.signing_key == fed / "keys" / "server.key"
    assert config.report_as_of == datetime(2021, 3, 1, tzinfo=UTC)
    assert config.tls.client_ca == fed / "tls" / "ca.pem"
    assert config.parties["jprs"].tls_identity == "jprs"
    assert config.parties["jprs"].signing_keys == (fed / "keys" / "jprs.pub",)
    assert (config.pairings["secom-jprs"].root, config.pairings["secom-jprs"].subordinate) == (
        "secom",
        "jprs",
    )


def test_server_defaults(fed: Path) -> None:
    _edit(fed / "server.toml", 'name = "demo-exchange"\n', "")
    _edit(fed / "server.toml", 'report_as_of = "2021-03-01T00:00:00Z"\n', "")
    config = load_server_config(fed / "server.toml")
    assert config.name == "exchange"
    assert config.report_as_of is None
    assert config.max_snapshot_bytes == 256 * 1024 * 1024
    assert config.max_clock_skew_seconds == 300
    assert config.max_snapshot_validity_seconds == 31 * 86400
    assert config.keepalive == Keepalive(seconds=20, timeout_seconds=10)
    assert config.min_client_keepalive_seconds == 5
    assert config.max_version_step == 1048576


def test_server_max_version_step(fed: Path) -> None:
    _edit(fed / "server.toml", "[tls]", "max_version_step = 10\n\n[tls]")
    config = load_server_config(fed / "server.toml")
    assert config.max_version_step == 10
    assert policy_of(config).max_version_step == 10


def test_server_max_version_step_must_be_positive(fed: Path) -> None:
    _edit(fed / "server.toml", "[tls]", "max_version_step = 0\n\n[tls]")
    _server_fails(fed, "server.max_version_step: must be at least 1, got 0")


def test_server_limits_defaults(fed: Path) -> None:
    limits = load_server_config(fed / "server.toml").limits
    assert (limits.max_inflight_bytes, limits.stream_min_bytes_per_second) == (1 << 30, 1024)


def test_the_inflight_budget_grows_with_the_largest_snapshot(fed: Path) -> None:
    _edit(fed / "server.toml", "[tls]", f"max_snapshot_bytes = {2 << 30}\n\n[tls]")
    assert load_server_config(fed / "server.toml").limits.max_inflight_bytes == 2 << 30


def test_an_inflight_budget_below_the_largest_snapshot_is_refused(fed: Path) -> None:
    _edit(fed / "server.toml", "[tls]", "max_inflight_bytes = 1000\n\n[tls]")
    _server_fails(
        fed,
        "server.max_inflight_bytes: must be at least server.max_snapshot_bytes "
        "(268435456), got 1000",
    )


def test_a_zero_minimum_stream_rate_turns_the_check_off(fed: Path) -> None:
    _edit(fed / "server.toml", "[tls]", "stream_min_bytes_per_second = 0\n\n[tls]")
    assert load_server_config(fed / "server.toml").limits.stream_min_bytes_per_second == 0


def test_server_keepalive_settings(fed: Path) -> None:
    settings = (
        "keepalive_seconds = 4\nkeepalive_timeout_seconds = 2\nmin_client_keepalive_seconds = 1"
    )
    _edit(fed / "server.toml", "[tls]", f"{settings}\n\n[tls]")
    config = load_server_config(fed / "server.toml")
    assert config.keepalive == Keepalive(seconds=4, timeout_seconds=2)
    assert config.min_client_keepalive_seconds == 1


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("keepalive_seconds = 0", "server.keepalive_seconds: must be at least 1, got 0"),
        (
            "keepalive_timeout_seconds = 0.5",
            "server.keepalive_timeout_seconds: expected int, got float",
        ),
        (
            "min_client_keepalive_seconds = 0",
            "server.min_client_keepalive_seconds: must be at least 1, got 0",
        ),
    ],
)
def test_server_keepalive_errors(fed: Path, setting: str, message: str) -> None:
    _edit(fed / "server.toml", "[tls]", f"{setting}\n\n[tls]")
    _server_fails(fed, message)


def test_server_paths_are_relative_to_the_config_file_not_the_cwd(
    fed: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    config = load_server_config(fed / "server.toml")
    assert config.database == fed / "state" / "server.db"
    assert config.tls.cert == fed / "tls" / "server.crt"
    assert config.parties["secom"].signing_keys == (fed / "keys" / "secom.pub",)


def test_server_absolute_paths_are_kept(fed: Path) -> None:
    absolute = fed / "keys" / "server.key"
    _edit(fed / "server.toml", '"keys/server.key"', f'"{absolute}"')
    assert load_server_config(fed / "server.toml").signing_key == absolute


def test_a_missing_server_config(tmp_path: Path) -> None:
    _fails(load_server_config, tmp_path / "server.toml", "cannot read: No such file or directory")


def test_invalid_toml(fed: Path) -> None:
    (fed / "server.toml").write_text("[server\nname = 1\n")
    with pytest.raises(
        ConfigError, match=f"^{re.escape(str(fed / 'server.toml'))}: not valid TOML: "
    ):
        load_server_config(fed / "server.toml")


def test_a_config_that_is_not_utf8(fed: Path) -> None:
    (fed / "server.toml").write_bytes(b'[server]\nname = "\xff"\n')
    with pytest.raises(ConfigError, match=f"^{re.escape(str(fed / 'server.toml'))}: not UTF-8: "):
        load_server_config(fed / "server.toml")


def test_an_unknown_top_level_table(fed: Path) -> None:
    _edit(fed / "server.toml", "[tls]", "[logging]\nlevel = 1\n\n[tls]")
    _server_fails(fed, "logging: unknown key")


def test_a_misspelt_server_key(fed: Path) -> None:
    _edit(fed / "server.toml", "listen =", "listn =")
    _server_fails(fed, "server.listn: unknown key")


def test_a_misspelt_nested_key(fed: Path) -> None:
    _edit(fed / "server.toml", 'tls_identity = "jprs"', 'tls_identiy = "jprs"')
    _server_fails(fed, "parties.jprs.tls_identiy: unknown key")


def test_a_string_where_an_integer_belongs(fed: Path) -> None:
    _edit(fed / "server.toml", "[tls]", 'max_snapshot_bytes = "256 MiB"\n\n[tls]')
    _server_fails(fed, "server.max_snapshot_bytes: expected int, got str")


def test_a_boolean_is_not_an_integer(fed: Path) -> None:
    _edit(fed / "server.toml", "[tls]", "max_clock_skew_seconds = true\n\n[tls]")
    _server_fails(fed, "server.max_clock_skew_seconds: expected int, got bool")


def test_a_zero_limit_is_refused(fed: Path) -> None:
    _edit(fed / "server.toml", "[tls]", "max_snapshot_bytes = 0\n\n[tls]")
    _server_fails(fed, "server.max_snapshot_bytes: must be at least 1, got 0")


def test_a_zero_clock_skew_is_allowed(fed: Path) -> None:
    _edit(fed / "server.toml", "[tls]", "max_clock_skew_seconds = 0\n\n[tls]")
    assert load_server_config(fed / "server.toml").max_clock_skew_seconds == 0


def test_a_negative_integer(fed: Path) -> None:
    _edit(fed / "server.toml", "[tls]", "max_snapshot_validity_seconds = -1\n\n[tls]")
    _server_fails(fed, "server.max_snapshot_validity_seconds: must be at least 1, got -1")


def test_a_missing_server_key(fed: Path) -> None:
    _edit(fed / "server.toml", 'listen = "127.0.0.1:0"\n', "")
    _server_fails(fed, "server.listen: missing")


def test_the_client_ca_is_required(fed: Path) -> None:
    _edit(fed / "server.toml", 'client_ca = "tls/ca.pem"\n', "")
    _server_fails(fed, "tls.client_ca: missing")


def test_the_tls_table_is_required(fed: Path) -> None:
    text = (fed / "server.toml").read_text()
    (fed / "server.toml").write_text(re.sub(r"\[tls\]\n(.+\n)+", "", text))
    _server_fails(fed, "tls: missing")


def test_a_table_that_is_a_string(fed: Path) -> None:
    text = (fed / "server.toml").read_text()
    (fed / "server.toml").write_text('parties = "secom"\n' + text.split("[parties.secom]")[0])
    _server_fails(fed, "parties: expected dict, got str")


def test_a_missing_signing_key_file(fed: Path) -> None:
    (fed / "keys" / "server.key").unlink()
    _server_fails(fed, f"server.signing_key: file not found: {fed / 'keys' / 'server.key'}")


def test_a_missing_tls_file(fed: Path) -> None:
    (fed / "tls" / "server.crt").unlink()
    _server_fails(fed, f"tls.cert: file not found: {fed / 'tls' / 'server.crt'}")


def test_a_missing_party_key_names_the_list_element(fed: Path) -> None:
    _edit(fed / "server.toml", '["keys/jprs.pub"]', '["keys/jprs.pub", "keys/jprs-2.pub"]')
    _server_fails(fed, f"parties.jprs.signing_keys[1]: file not found: {fed / 'keys/jprs-2.pub'}")


def test_a_missing_server_list_element_is_element_0(fed: Path) -> None:
    (fed / "keys" / "secom.pub").unlink()
    _server_fails(fed, f"parties.secom.signing_keys[0]: file not found: {fed / 'keys/secom.pub'}")


def test_a_party_needs_a_signing_key(fed: Path) -> None:
    _edit(fed / "server.toml", '["keys/jprs.pub"]', "[]")
    _server_fails(fed, "parties.jprs.signing_keys: at least one key is required")


def test_a_pairing_naming_an_unknown_party(fed: Path) -> None:
    _edit(fed / "server.toml", 'root = "secom"', 'root = "sekom"')
    _server_fails(fed, "pairings.secom-jprs.root: no [parties.sekom] table")


def test_a_pairing_naming_an_unknown_subordinate(fed: Path) -> None:
    _edit(fed / "server.toml", 'subordinate = "jprs"', 'subordinate = "jpr"')
    _server_fails(fed, "pairings.secom-jprs.subordinate: no [parties.jpr] table")


def test_a_party_cannot_be_its_own_subordinate(fed: Path) -> None:
    _edit(fed / "server.toml", 'subordinate = "jprs"', 'subordinate = "secom"')
    _server_fails(fed, "pairings.secom-jprs.subordinate: must differ from root")


def test_two_parties_cannot_share_a_tls_identity(fed: Path) -> None:
    _edit(fed / "server.toml", 'tls_identity = "jprs"', 'tls_identity = "secom"')
    _server_fails(
        fed, "parties.jprs.tls_identity: 'secom' is already the tls_identity of parties.secom"
    )


def test_report_as_of_must_be_a_time(fed: Path) -> None:
    _edit(fed / "server.toml", '"2021-03-01T00:00:00Z"', '"March 2021"')
    _server_fails(fed, "server.report_as_of: not an RFC 3339 time: 'March 2021'")


def test_report_as_of_needs_a_timezone(fed: Path) -> None:
    _edit(fed / "server.toml", '"2021-03-01T00:00:00Z"', '"2021-03-01T00:00:00"')
    _server_fails(fed, "server.report_as_of: needs a timezone, e.g. 2021-03-01T00:00:00Z")


def test_report_as_of_is_a_string_not_a_toml_datetime(fed: Path) -> None:
    _edit(fed / "server.toml", '"2021-03-01T00:00:00Z"', "2021-03-01T00:00:00Z")
    _server_fails(fed, "server.report_as_of: expected str, got datetime")


def test_report_as_of_keeps_its_offset(fed: Path) -> None:
    _edit(fed / "server.toml", '"2021-03-01T00:00:00Z"', '"2021-03-01T09:00:00+09:00"')
    as_of = load_server_config(fed / "server.toml").report_as_of
    assert as_of == datetime(2021, 3, 1, 9, tzinfo=timezone(timedelta(hours=9)))
    assert as_of == datetime(2021, 3, 1, tzinfo=UTC)


def test_an_empty_report_as_of_means_now(fed: Path) -> None:
    _edit(fed / "server.toml", '"2021-03-01T00:00:00Z"', '""')
    assert load_server_config(fed / "server.toml").report_as_of is None


# --- the agent ----------------------------------------------------------------------------------


def test_the_demo_agent_configs_load(fed: Path) -> None:
    secom = load_agent_config(fed / "secom.toml")
    assert secom.party == "secom"
    assert secom.database == fed / "state" / "secom.db"
    assert secom.signing_key == fed / "keys" / "secom.key"
    assert secom.sources == (f"issuance-log:{fed / 'data' / 'secom_issuance_log.jsonl'}",)
    assert secom.report_dir == fed / "reports" / "secom"
    assert secom.server.address == f"127.0.0.1:{PORT}"
    assert secom.server.signing_keys == (fed / "keys" / "server.pub",)
    assert secom.peers == {"jprs": (fed / "keys" / "jprs.pub",)}
    pairing = secom.pairings["secom-jprs"]
    assert (pairing.role, pairing.peer) == ("root", "jprs")
    assert pairing.issuer_certificates == (fed / "data" / "secom_roots.pem",)
    assert pairing.subject_organizations == ("Japan Registry Services Co., Ltd.",)
    jprs = load_agent_config(fed / "jprs.toml")
    assert jprs.sources == (str(fed / "data" / "jprs_ca_certificates.pem"),)
    assert jprs.pairings["secom-jprs"].subject_organizations == ()


def test_a_profile_applies_from_its_effective_date(fed: Path) -> None:
    (profile,) = load_agent_config(fed / "jprs.toml").profiles
    assert (profile.operator, profile.serial_bytes) == ("jprs", 16)
    assert (profile.effective_from, profile.effective_until) == (
        datetime(2019, 7, 1, tzinfo=UTC),
        None,
    )
    _edit(
        fed / "jprs.toml",
        "effective_from = 2019-07-01T00:00:00Z",
        "effective_from = 2019-07-01T00:00:00Z\neffective_until = 2019-01-01T00:00:00Z",
    )
    _agent_fails(fed, "profiles.jprs.effective_until: must be after effective_from", "jprs")
    _edit(
        fed / "jprs.toml", "effective_until = 2019-01-01T00:00:00Z", "effective_until = 2019-01-01"
    )
    _agent_fails(fed, "profiles.jprs.effective_until: expected datetime, got date", "jprs")


def test_agent_defaults(fed: Path) -> None:
    config = load_agent_config(fed / "secom.toml")
    assert config.snapshot_validity_seconds == 86400
    assert config.snapshot_refresh_seconds == 43200  # half the validity
    assert config.rpc_timeout_seconds == 10
    assert config.keepalive == Keepalive(seconds=20, timeout_seconds=10)
    assert config.retry == RetryPolicy(base=0.5, factor=2.0, cap=8.0, retries=4)
    assert config.max_source_bytes == 256 * 1024 * 1024
    assert config.max_snapshot_bytes == 256 * 1024 * 1024


def test_the_fetch_limit_is_configurable_and_reaches_the_client(fed: Path) -> None:
    """Issue 13: an agent of a federation whose server takes larger snapshots must fetch them."""
    _edit(fed / "secom.toml", "[server]", f"max_snapshot_bytes = {1 << 30}\n\n[server]")
    config = load_agent_config(fed / "secom.toml")
    assert config.max_snapshot_bytes == 1 << 30
    agent = Agent(config)  # connects on its first call only
    try:
        assert agent.client.max_snapshot_bytes == 1 << 30
    finally:
        agent.close()


def test_the_source_size_cap_is_configurable(fed: Path) -> None:
    _edit(fed / "secom.toml", "[server]", "max_source_bytes = 1048576\n\n[server]")
    assert load_agent_config(fed / "secom.toml").max_source_bytes == 1048576


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "agent.max_source_bytes: must be at least 1, got 0"),
        ('"256 MiB"', "agent.max_source_bytes: expected int, got str"),
    ],
)
def test_a_bad_source_size_cap_is_refused(fed: Path, value: str, message: str) -> None:
    _edit(fed / "secom.toml", "[server]", f"max_source_bytes = {value}\n\n[server]")
    _fails(load_agent_config, fed / "secom.toml", message)


def test_the_refresh_age_defaults_to_half_the_configured_validity(fed: Path) -> None:
    _edit(fed / "secom.toml", "[server]", "snapshot_validity_seconds = 3600\n\n[server]")
    assert load_agent_config(fed / "secom.toml").snapshot_refresh_seconds == 1800


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "agent.snapshot_refresh_seconds: must be at least 0, got -1"),
        (
            "86400",
            "agent.snapshot_refresh_seconds: must be less than "
            "agent.snapshot_validity_seconds (86400), got 86400",
        ),
    ],
)
def test_a_refresh_age_not_before_expiry_is_refused(fed: Path, value: str, message: str) -> None:
    _edit(fed / "secom.toml", "[server]", f"snapshot_refresh_seconds = {value}\n\n[server]")
    _agent_fails(fed, message)


def test_agent_settings_override_defaults(fed: Path) -> None:
    _edit(fed / "secom.toml", "[server]", "snapshot_validity_seconds = 3600\n\n[server]")
    _edit(fed / "secom.toml", "[server]", "rpc_timeout_seconds = 30\n\n[server]")
    config = load_agent_config(fed / "secom.toml")
    assert (config.snapshot_validity_seconds, config.rpc_timeout_seconds) == (3600, 30)


def test_agent_keepalive_settings(fed: Path) -> None:
    _edit(fed / "secom.toml", "[server]", "keepalive_seconds = 2\n\n[server]")
    _edit(fed / "secom.toml", "[server]", "keepalive_timeout_seconds = 3\n\n[server]")
    config = load_agent_config(fed / "secom.toml")
    assert config.keepalive == Keepalive(seconds=2, timeout_seconds=3)
    assert config.keepalive.bound_seconds == 5


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("keepalive_seconds = 0", "agent.keepalive_seconds: must be at least 1, got 0"),
        ("keepalive_seconds = 1.5", "agent.keepalive_seconds: expected int, got float"),
        (
            "keepalive_timeout_seconds = -1",
            "agent.keepalive_timeout_seconds: must be at least 1, got -1",
        ),
        (
            'keepalive_timeout_seconds = "10s"',
            "agent.keepalive_timeout_seconds: expected int, got str",
        ),
        ("keepalive_second = 5", "agent.keepalive_second: unknown key"),
    ],
)
def test_agent_keepalive_errors(fed: Path, setting: str, message: str) -> None:
    _edit(fed / "secom.toml", "[server]", f"{setting}\n\n[server]")
    _agent_fails(fed, message)


def test_a_retry_table_sets_the_clients_policy(fed: Path) -> None:
    retry = "[retry]\nattempts = 3\ninitial_backoff_seconds = 0.25\nmax_backoff_seconds = 2\n"
    (fed / "secom.toml").write_text((fed / "secom.toml").read_text() + retry)
    config = load_agent_config(fed / "secom.toml")
    assert config.retry == RetryPolicy(base=0.25, factor=2.0, cap=2.0, retries=2)


def test_each_retry_key_has_a_default(fed: Path) -> None:
    (fed / "secom.toml").write_text((fed / "secom.toml").read_text() + "[retry]\nattempts = 1\n")
    assert load_agent_config(fed / "secom.toml").retry == RetryPolicy(retries=0)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("attempts = 0", "retry.attempts: must be at least 1, got 0"),
        ("attempts = 2.5", "retry.attempts: expected int, got float"),
        ("attempts = true", "retry.attempts: expected int, got bool"),
        ("attemps = 3", "retry.attemps: unknown key"),
        (
            'initial_backoff_seconds = "1s"',
            "retry.initial_backoff_seconds: expected int or float, got str",
        ),
        (
            "initial_backoff_seconds = true",
            "retry.initial_backoff_seconds: expected int or float, got bool",
        ),
        (
            "initial_backoff_seconds = 0",
            "retry.initial_backoff_seconds: must be more than 0 and finite, got 0",
        ),
        (
            "max_backoff_seconds = -0.5",
            "retry.max_backoff_seconds: must be more than 0 and finite, got -0.5",
        ),
        (
            "max_backoff_seconds = inf",
            "retry.max_backoff_seconds: must be more than 0 and finite, got inf",
        ),
        (
            "initial_backoff_seconds = 2\nmax_backoff_seconds = 1.5",
            "retry.max_backoff_seconds: must be at least initial_backoff_seconds (2), got 1.5",
        ),
        (
            "initial_backoff_seconds = 10",  # above the default max_backoff_seconds of 8
            "retry.max_backoff_seconds: must be at least initial_backoff_seconds (10), got 8",
        ),
    ],
)
def test_retry_errors(fed: Path, table: str, message: str) -> None:
    (fed / "secom.toml").write_text((fed / "secom.toml").read_text() + f"[retry]\n{table}\n")
    _agent_fails(fed, message)


def test_retry_must_be_a_table(fed: Path) -> None:
    _edit(fed / "secom.toml", "[agent]", "retry = 3\n\n[agent]")
    _agent_fails(fed, "retry: expected dict, got int")


def test_agent_paths_are_relative_to_the_config_file_not_the_cwd(
    fed: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = fed / "etc"
    etc.mkdir()
    text = (fed / "secom.toml").read_text()
    for directory in ("keys", "tls", "data"):  # state/ and reports/ stay beside the config
        text = text.replace(f'"{directory}/', f'"../{directory}/')
    text = text.replace("issuance-log:data/", "issuance-log:../data/")
    (etc / "secom.toml").write_text(text)
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    config = load_agent_config(etc / "secom.toml")
    assert config.signing_key == etc / ".." / "keys" / "secom.key"
    assert config.database == etc / "state" / "secom.db"
    assert config.sources == (f"issuance-log:{etc / '..' / 'data' / 'secom_issuance_log.jsonl'}",)
    assert config.server.ca == etc / ".." / "tls" / "ca.pem"


def test_a_source_kind_prefix_stays_and_its_path_is_resolved(fed: Path) -> None:
    _edit(
        fed / "secom.toml",
        '["issuance-log:data/secom_issuance_log.jsonl"]',
        '["pem:data/roots.txt", "data/a:b.pem", "/srv/ca/list.pem", "dir:/srv/ca"]',
    )
    assert load_agent_config(fed / "secom.toml").sources == (
        f"pem:{fed / 'data' / 'roots.txt'}",
        str(fed / "data" / "a:b.pem"),
        "/srv/ca/list.pem",
        "dir:/srv/ca",
    )


def test_a_missing_agent_config(tmp_path: Path) -> None:
    _fails(load_agent_config, tmp_path / "secom.toml", "cannot read: No such file or directory")


def test_an_agent_config_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "secom.toml").mkdir()
    _fails(load_agent_config, tmp_path / "secom.toml", "cannot read: Is a directory")


def test_an_unknown_agent_table(fed: Path) -> None:
    _edit(fed / "secom.toml", "[agent]", "[agents]")
    _agent_fails(fed, "agents: unknown key")


def test_a_misspelt_agent_key(fed: Path) -> None:
    _edit(fed / "secom.toml", "report_dir =", "reports_dir =")
    _agent_fails(fed, "agent.reports_dir: unknown key")


def test_a_misspelt_pairing_key(fed: Path) -> None:
    _edit(fed / "secom.toml", 'peer = "jprs"', 'peeer = "jprs"')
    _agent_fails(fed, "pairings.secom-jprs.peeer: unknown key")


def test_a_misspelt_endpoint_key(fed: Path) -> None:
    _edit(fed / "secom.toml", 'ca = "tls/ca.pem"', 'cacert = "tls/ca.pem"')
    _agent_fails(fed, "server.cacert: unknown key")


def test_a_pairing_naming_an_unknown_peer(fed: Path) -> None:
    _edit(fed / "secom.toml", 'peer = "jprs"', 'peer = "verisign"')
    _agent_fails(fed, "pairings.secom-jprs.peer: no [peers.verisign] table")


def test_a_pairing_role_is_root_or_subordinate(fed: Path) -> None:
    _edit(fed / "secom.toml", 'role = "root"', 'role = "issuer"')
    _agent_fails(fed, "pairings.secom-jprs.role: expected 'root' or 'subordinate', got 'issuer'")


def test_a_missing_agent_key(fed: Path) -> None:
    _edit(fed / "jprs.toml", 'party = "jprs"\n', "")
    _agent_fails(fed, "agent.party: missing", party="jprs")


def test_a_missing_pairing_key(fed: Path) -> None:
    _edit(fed / "secom.toml", 'peer = "jprs"\n', "")
    _agent_fails(fed, "pairings.secom-jprs.peer: missing")


def test_the_server_endpoint_is_required(fed: Path) -> None:
    text = (fed / "secom.toml").read_text()
    (fed / "secom.toml").write_text(re.sub(r"\[server\]\n(.+\n)+", "", text))
    _agent_fails(fed, "server: missing")


def test_sources_must_be_a_list(fed: Path) -> None:
    _edit(fed / "jprs.toml", '["data/jprs_ca_certificates.pem"]', '"data/jprs_ca_certificates.pem"')
    _agent_fails(fed, "agent.sources: expected list, got str", party="jprs")


def test_a_source_must_be_a_string(fed: Path) -> None:
    _edit(fed / "jprs.toml", '["data/jprs_ca_certificates.pem"]', '["data/x.pem", 7]')
    _agent_fails(fed, "agent.sources[1]: expected str, got int", party="jprs")


def test_a_timeout_must_be_an_integer(fed: Path) -> None:
    _edit(fed / "secom.toml", "[server]", "rpc_timeout_seconds = 2.5\n\n[server]")
    _agent_fails(fed, "agent.rpc_timeout_seconds: expected int, got float")


def test_the_agent_signing_key_must_exist(fed: Path) -> None:
    (fed / "keys" / "secom.key").unlink()
    _agent_fails(fed, f"agent.signing_key: file not found: {fed / 'keys' / 'secom.key'}")


def test_the_server_signing_keys_must_exist(fed: Path) -> None:
    (fed / "keys" / "server.pub").unlink()
    _agent_fails(fed, f"server.signing_keys[0]: file not found: {fed / 'keys' / 'server.pub'}")


def test_the_client_certificate_must_exist(fed: Path) -> None:
    (fed / "tls" / "secom.crt").unlink()
    _agent_fails(fed, f"server.cert: file not found: {fed / 'tls' / 'secom.crt'}")


def test_the_peer_keys_must_exist(fed: Path) -> None:
    (fed / "keys" / "jprs.pub").unlink()
    _agent_fails(fed, f"peers.jprs.signing_keys[0]: file not found: {fed / 'keys' / 'jprs.pub'}")


def test_the_issuer_certificates_must_exist(fed: Path) -> None:
    (fed / "data" / "secom_roots.pem").unlink()
    missing = fed / "data" / "secom_roots.pem"
    _agent_fails(fed, f"pairings.secom-jprs.issuer_certificates[0]: file not found: {missing}")


# --- docs/configuration.md ----------------------------------------------------------------------


def _accepted_keys(module: object) -> set[str]:
    """Every key name a loader passes to `Table.only`, read from its source."""
    source = Path(str(getattr(module, "__file__", ""))).read_text()
    keys: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr != "only":
            continue
        (arg,) = node.args
        if isinstance(arg, ast.Name):
            keys |= set(getattr(module, arg.id))
        else:
            assert isinstance(arg, ast.List | ast.Tuple)
            keys |= {
                elt.value
                for elt in arg.elts
                if isinstance(elt, ast.Constant) and isinstance(elt.value, str)
            }
    return keys


AGENT_KEYS = (
    _accepted_keys(agent_config_module)
    | _accepted_keys(config_inventory_module)
    | _accepted_keys(config_notify_module)
)
SERVER_KEYS = _accepted_keys(server_config_module)
NAMED_TABLES = ("peers", "pairings", "parties", "profiles")  # children named by the user
USER_NAMED_VALUES = ("ccadb_owners",)  # an inline table whose keys are the user's own


def _doc_section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _examples(section: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", section, flags=re.DOTALL)


def _keys_of(document: object) -> set[str]:
    """Every key an example uses, at any depth; the names of named tables are not keys."""
    keys: set[str] = set()
    if isinstance(document, list):
        for item in document:
            keys |= _keys_of(item)
    if not isinstance(document, dict):
        return keys
    for name, value in document.items():
        keys.add(name)
        named = name in NAMED_TABLES and isinstance(value, dict)
        for child in value.values() if named else [value]:
            keys |= _keys_of(child) if name not in USER_NAMED_VALUES else set()
    return keys


def test_the_loaders_accept_the_keys_this_test_expects() -> None:
    assert {"party", "rpc_timeout_seconds", "peer", "subject_organizations"} <= AGENT_KEYS
    assert {"report_as_of", "client_ca", "tls_identity", "subordinate"} <= SERVER_KEYS
    assert set(agent_config_module._AGENT_KEYS) <= AGENT_KEYS
    assert set(server_config_module._SERVER_KEYS) <= SERVER_KEYS


@pytest.mark.parametrize(
    ("title", "keys"), [("Agent configuration", AGENT_KEYS), ("Server configuration", SERVER_KEYS)]
)
def test_every_accepted_key_is_documented(title: str, keys: set[str]) -> None:
    section = _doc_section(title)
    spellings = ("`{}`", "`[{}]`", "`[{}.NAME]`", "`[[{}]]`")  # key, table, named, array
    undocumented = sorted(k for k in keys if not any(s.format(k) in section for s in spellings))
    assert undocumented == []


@pytest.mark.parametrize(
    ("title", "keys"), [("Agent configuration", AGENT_KEYS), ("Server configuration", SERVER_KEYS)]
)
def test_the_complete_example_has_every_key_and_no_other(title: str, keys: set[str]) -> None:
    (example,) = _examples(_doc_section(title))
    assert _keys_of(tomllib.loads(example)) == keys


def test_the_documented_agent_example_loads(fed: Path) -> None:
    (example,) = _examples(_doc_section("Agent configuration"))
    (fed / "example-agent.toml").write_text(example)
    write_private_key(fed / "keys" / "secom-next.key", generate())  # the example is mid-rotation
    config = load_agent_config(fed / "example-agent.toml")
    assert config.party == "secom"
    assert config.next_signing_key == fed / "keys" / "secom-next.key"
    assert config.pairings["secom-jprs"].peer == "jprs"


def test_the_documented_server_example_loads(fed: Path) -> None:
    (example,) = _examples(_doc_section("Server configuration"))
    (fed / "example-server.toml").write_text(example)
    # The example names a CRL: loading checks that the file is there; its signature is checked
    # by `server run` and `config check` (tests/integration/test_tls_revocation.py).
    crl = crl_of(new_ca(), [], datetime.now(UTC)).public_bytes(serialization.Encoding.PEM)
    (fed / "tls" / "crl.pem").write_bytes(crl)
    config = load_server_config(fed / "example-server.toml")
    assert config.tls.client_crl == fed / "tls" / "crl.pem"
    assert set(config.parties) == {"secom", "jprs"}
    assert config.report_as_of is None


def test_an_unknown_report_schedule(fed: Path) -> None:
    _edit(
        fed / "server.toml",
        'subordinate = "jprs"\n',
        'subordinate = "jprs"\nreport_schedule = "hourly"\n',
    )
    _server_fails(
        fed,
        "pairings.secom-jprs.report_schedule: expected one of daily, weekly, monthly, never,"
        " got 'hourly'",
    )


def test_a_next_signing_key_must_exist_and_differ_from_the_signing_key(fed: Path) -> None:
    missing = fed / "keys" / "secom-next.key"
    _edit(fed / "secom.toml", "[server]", 'next_signing_key = "keys/secom-next.key"\n\n[server]')
    _agent_fails(fed, f"agent.next_signing_key: file not found: {missing}")
    _edit(fed / "secom.toml", "keys/secom-next.key", "keys/secom.key")
    _agent_fails(fed, "agent.next_signing_key: is the signing_key itself; name the new key")


def test_the_agent_pins_the_servers_name_as_its_logs_origin(fed: Path) -> None:
    assert load_agent_config(fed / "secom.toml").server.name == "demo-exchange"


def test_without_a_server_name_the_agent_adopts_one_later(fed: Path) -> None:
    _edit(fed / "secom.toml", 'name = "demo-exchange"', "")
    assert load_agent_config(fed / "secom.toml").server.name == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"demo exchange"', "server.name: 'demo exchange' is no log origin (no spaces, no '+')"),
        ('"a+b"', "server.name: 'a+b' is no log origin (no spaces, no '+')"),
        ("7", "server.name: expected str, got int"),
    ],
)
def test_a_server_name_that_is_no_log_origin_is_refused(
    fed: Path, value: str, message: str
) -> None:
    _edit(fed / "secom.toml", 'name = "demo-exchange"', f"name = {value}")
    _agent_fails(fed, message)


# --- "Several pairings": every snippet loads ------------------------------------------------


def _several_pairings_snippets() -> list[str]:
    return _examples(_doc_section("Several pairings: many subordinates, cross-signs"))


def _before_first(text: str, table: str) -> str:
    """The tables of a configuration file before its first `table` one."""
    return text[: text.index(table)]


def test_the_several_pairings_snippets_load(fed: Path) -> None:
    """Each agent snippet after the demo's [agent] and [server] tables, each server snippet
    after its [server] and [tls]: they load, with the parties and pairings they show."""
    root_agent, root_server, sub_agent, sub_server = _several_pairings_snippets()
    for party in ("nii", "cybertrust", "root1", "root2", "sub"):
        (fed / "keys" / f"{party}.pub").write_bytes(generate().public.public_pem())
    for root in ("root1", "root2"):
        (fed / "data" / f"{root}.pem").write_bytes((fed / "data" / "secom_roots.pem").read_bytes())
    agent_head = _before_first((fed / "secom.toml").read_text(), "[peers.")
    server_head = _before_first((fed / "server.toml").read_text(), "[parties.")

    (fed / "root.toml").write_text(agent_head + root_agent)
    root_config = load_agent_config(fed / "root.toml")
    assert {name: (p.role, p.peer) for name, p in root_config.pairings.items()} == {
        "secom-jprs": ("root", "jprs"),
        "secom-nii": ("root", "nii"),
        "secom-cybertrust": ("root", "cybertrust"),
    }
    assert root_config.attribution.subordinates == {"jprs", "nii", "cybertrust"}
    (fed / "sub.toml").write_text(
        agent_head.replace('party = "secom"', 'party = "sub"') + sub_agent
    )
    sub = load_agent_config(fed / "sub.toml")
    assert {name: (p.role, p.peer) for name, p in sub.pairings.items()} == {
        "root1-sub": ("subordinate", "root1"),
        "root2-sub": ("subordinate", "root2"),
    }
    for snippet, parties in (
        (root_server, {"secom", "jprs", "nii", "cybertrust"}),
        (sub_server, {"root1", "root2", "sub"}),
    ):
        (fed / "several.toml").write_text(server_head + snippet)
        server = load_server_config(fed / "several.toml")
        assert set(server.parties) == parties
        assert len(server.pairings) == len(parties) - 1
