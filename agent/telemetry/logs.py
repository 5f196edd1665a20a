"""Log lines: one JSON object per line for machines, plain text on a terminal.

`setup_logging` picks the format: `INVSYNC_LOG_FORMAT=json|text` if set, otherwise text when the
stream is a terminal and JSON when it is not (journald, a container runtime, a file).

The formatter writes only the record's time, level, logger, message, exception text and the
structured fields in `FIELDS` given through `extra=`. It never walks other record attributes,
so nothing reaches a log line unless a caller put it in the message or in one of those fields;
no caller passes key material or passphrases.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TextIO

FIELDS = ("party", "pairing", "version", "peer", "rule")
# The fields of the work under way (this daemon's party, the pairing of the cycle), which every
# line logged meanwhile carries unless its caller gave the field itself.
_CONTEXT: contextvars.ContextVar[tuple[tuple[str, object], ...]] = contextvars.ContextVar(
    "invsync_log_context", default=()
)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Every line logged inside the block carries `fields` (names from FIELDS)."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"not log fields: {sorted(unknown)}")
    token = _CONTEXT.set(tuple({**dict(_CONTEXT.get()), **fields}.items()))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class ContextFilter(logging.Filter):
    """Adds the fields of `log_context` to each record that does not set them itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _CONTEXT.get():
            if record.__dict__.get(name) is None:
                record.__dict__[name] = value
        return True


ENV_VAR = "INVSYNC_LOG_FORMAT"
FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC, Z), level, logger, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, object] = {
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value if isinstance(value, int | str) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """The classic line, with the structured fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = [
            f"{name}={record.__dict__[name]}"
            for name in FIELDS
            if record.__dict__.get(name) is not None
        ]
        if not fields:
            return text
        head, sep, tail = text.partition("\n")
        return f"{head} [{' '.join(fields)}]{sep}{tail}"


def choose_format(stream: TextIO, environ: dict[str, str] | None = None) -> str:
    """`json` or `text`: the environment variable if set, else text on a terminal only."""
    env = os.environ if environ is None else environ
    wanted = env.get(ENV_VAR, "").strip().lower()
    if wanted in FORMATS:
        return wanted
    isatty = getattr(stream, "isatty", None)
    return "text" if callable(isatty) and isatty() else "json"


def formatter_for(kind: str) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else TextFormatter()


def setup_logging(
    stream: TextIO | None = None, level: int = logging.INFO, environ: dict[str, str] | None = None
) -> logging.Handler:
    """Replace the root logger's handlers with one writing to `stream` (stderr by default)."""
    out = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter_for(choose_format(out, environ)))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
