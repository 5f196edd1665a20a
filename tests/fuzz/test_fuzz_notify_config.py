"""The `[[notify]]` reader fed arbitrary tables: keys it knows and others, values of every TOML
type. It returns the channels or raises the one ConfigError naming the file and key; nothing
foreign (a KeyError, TypeError, ValueError) ever leaves it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from invsync.agent.config.notify import Notify, WebhookChannel, read_notify
from invsync.agent.errors import ConfigError
from invsync.agent.tomlconf import Table

KEYS = [
    "name", "kind", "severities", "codes", "events", "command", "host", "port", "security",
    "from", "to", "username", "password_file", "password_env", "ca", "url", "secret_file",
    "secret_env", "unknown",
]  # fmt: skip
SETTINGS_KEYS = [
    "failing_cycles", "initial_backoff_seconds", "max_backoff_seconds", "timeout_seconds", "x",
]  # fmt: skip
WORDS = [
    "smtp", "webhook", "command", "starttls", "tls", "none", "error", "warning", "127.0.0.1",
    "localhost", "smtp.example.net", "https://hooks.example/x", "http://127.0.0.1:9/x",
    "http://example.net/", "a@b.example", "missing-at-subordinate", "resolved", "", " ", "=",
    "INVSYNC_X",
]  # fmt: skip

scalars = st.one_of(
    st.sampled_from(WORDS),
    st.text(max_size=12),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.booleans(),
    st.just(datetime(2021, 3, 1, tzinfo=UTC)),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
entries = st.dictionaries(st.sampled_from(KEYS), values, max_size=10)
settings = st.dictionaries(st.sampled_from(SETTINGS_KEYS), values, max_size=4)
roots = st.fixed_dictionaries(
    {},
    optional={
        "notify": st.lists(entries, max_size=3) | values,
        "notify_settings": settings | values,
    },
)


def _read(data: dict[str, Any]) -> Notify | None:
    try:
        return read_notify(Table(data, "", Path("/etc/invsync/agent.toml")))
    except ConfigError as e:
        assert str(e).startswith("/etc/invsync/agent.toml: notify"), str(e)
        return None


@given(roots)
def test_fuzz_notify_tables(data: dict[str, Any]) -> None:
    notify = _read(data)
    if notify is not None:
        assert all(c.name for c in notify.channels)


@given(
    st.fixed_dictionaries(
        {
            "name": st.text(min_size=1, max_size=8),
            "kind": st.sampled_from(["smtp", "webhook", "command"]),
        },
        optional={k: values for k in KEYS if k not in ("name", "kind")},
    )
)
def test_fuzz_entries_of_a_known_kind(entry: dict[str, Any]) -> None:
    _read({"notify": [entry]})


url_parts = st.tuples(
    st.sampled_from(["https", "http", "ftp", ""]),
    st.sampled_from(["", "user@", "u:p@", ":@"]),
    st.sampled_from(["127.0.0.1", "localhost", "[::1]", "hooks.example", "", "[::1", "a b"]),
    st.one_of(st.just(""), st.text(max_size=6).map(lambda port: ":" + port)),
    st.text(max_size=10),
)


@given(url_parts)
def test_fuzz_webhook_urls(parts: tuple[str, str, str, str, str]) -> None:
    # The URL is a credential: whatever it is, no error and no shown form quotes its path.
    scheme, userinfo, host, port, rest = parts
    url = f"{scheme}://{userinfo}{host}{port}/SECRETPATH{rest}"
    entry = {"name": "soc", "kind": "webhook", "url": url, "secret_env": "INVSYNC_X"}
    try:
        notify = read_notify(Table({"notify": [entry]}, "", Path("/etc/invsync/agent.toml")))
    except ConfigError as e:
        assert str(e).startswith("/etc/invsync/agent.toml: notify[0].url: "), str(e)
        assert "SECRETPATH" not in str(e)
        return
    (channel,) = notify.channels
    assert isinstance(channel, WebhookChannel)
    assert "SECRETPATH" not in channel.shown_url and "@" not in channel.shown_url
