"""agent/telemetry/logs.py: JSON lines off a terminal, text on one, and the override."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from invsync.agent.telemetry.logs import (
    FIELDS,
    JsonFormatter,
    TextFormatter,
    choose_format,
    log_context,
    setup_logging,
)
from tests.terminal import Tty


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def _emit(stream: io.StringIO, environ: dict[str, str]) -> str:
    setup_logging(stream, environ=environ)
    log = logging.getLogger("invsync.test")
    log.info(
        "pushed version=%d", 3, extra={"party": "secom", "pairing": "secom-jprs", "version": 3}
    )
    log.warning("refused", extra={"peer": "ipv4:127.0.0.1:5555"})
    return stream.getvalue()


def test_json_lines_parse_and_carry_the_fields(restore_root: None) -> None:
    out = _emit(io.StringIO(), {})
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["level"] == "INFO"
    assert first["logger"] == "invsync.test"
    assert first["message"] == "pushed version=3"
    assert (first["party"], first["pairing"], first["version"]) == ("secom", "secom-jprs", 3)
    assert first["time"].endswith("Z")
    assert datetime.fromisoformat(first["time"]).utcoffset() is not None
    assert "party" not in second
    assert second["peer"] == "ipv4:127.0.0.1:5555"
    assert second["level"] == "WARNING"


def test_text_on_a_terminal(restore_root: None) -> None:
    out = _emit(Tty(), {})
    first = out.splitlines()[0]
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)
    assert "invsync.test INFO pushed version=3" in first
    assert first.endswith("[party=secom pairing=secom-jprs version=3]")


def test_the_environment_overrides_the_terminal_check() -> None:
    assert choose_format(Tty(), {"INVSYNC_LOG_FORMAT": "json"}) == "json"
    assert choose_format(io.StringIO(), {"INVSYNC_LOG_FORMAT": "TEXT"}) == "text"
    assert choose_format(io.StringIO(), {"INVSYNC_LOG_FORMAT": "bogus"}) == "json"
    assert choose_format(Tty(), {}) == "text"


def test_exceptions_stay_on_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, None)
        import sys

        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_only_the_named_fields_reach_a_line() -> None:
    # Arbitrary extras (say a key object someone passed by mistake) are never written.
    secret = "-----BEGIN PRIVATE KEY-----MIGHAgEAMBMG"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    record.__dict__.update(signing_key=secret, passphrase="hunter2")
    for formatter in (JsonFormatter(), TextFormatter()):
        line = formatter.format(record)
        assert secret not in line
        assert "hunter2" not in line


def test_every_line_inside_a_log_context_carries_its_fields(restore_root: None) -> None:
    stream = io.StringIO()
    setup_logging(stream, environ={"INVSYNC_LOG_FORMAT": "json"})
    log = logging.getLogger("invsync.test")
    with log_context(party="jprs"):
        with log_context(pairing="secom-jprs", peer="secom"):
            log.info("cycle failed")  # a line whose caller named no field
            log.info("pushed", extra={"pairing": "other", "version": 2})  # the caller's win
        log.info("stopped")
    log.info("outside")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    fields = [{k: v for k, v in line.items() if k in FIELDS} for line in lines]
    assert fields == [
        {"party": "jprs", "pairing": "secom-jprs", "peer": "secom"},
        {"party": "jprs", "pairing": "other", "peer": "secom", "version": 2},
        {"party": "jprs"},
        {},
    ]
    with pytest.raises(ValueError, match=r"not log fields: \['secret'\]"), log_context(secret=1):
        pass
