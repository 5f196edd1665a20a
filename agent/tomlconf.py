"""Typed reading of a TOML table, with errors that name the file and the key path.

Both daemons' configurations are read through `Table`, so a wrong type, a missing key or an
unknown key (usually a typo that would silently drop a setting) all fail the same way:
``agent.toml: pairings.secom-jprs.peer: missing``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from invsync.agent.errors import ConfigError


class Table:
    def __init__(self, data: Mapping[str, Any], path: str, file: Path) -> None:
        self._data = data
        self._path = path
        self.file = file

    @classmethod
    def load(cls, file: Path) -> Table:
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"{file}: cannot read: {e.strerror}") from e
        except UnicodeDecodeError as e:  # TOML is UTF-8; this is a ValueError, not an OSError
            raise ConfigError(f"{file}: not UTF-8: byte {e.start}: {e.reason}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{file}: not valid TOML: {e}") from e
        return cls(data, "", file)

    def key_path(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.key_path(key)}: {problem}")

    def names(self) -> list[str]:
        return list(self._data)

    def only(self, allowed: Iterable[str]) -> None:
        """Reject unknown keys: a misspelt key must not silently fall back to a default."""
        unknown = sorted(set(self._data) - set(allowed))
        if unknown:
            raise self.fail(unknown[0], "unknown key")

    def _get(self, key: str, kind: type, default: Any) -> Any:
        if key not in self._data:
            if default is _REQUIRED:
                raise self.fail(key, "missing")
            return default
        value = self._data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(key, f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value: str = self._get(key, str, _REQUIRED if default is None else default)
        return value

    def opt_str(self, key: str) -> str | None:
        value = self._get(key, str, None)
        return value if isinstance(value, str) else None

    def integer(self, key: str, default: int | None = None, minimum: int = 1) -> int:
        """A whole number of at least `minimum`: a zero limit or timeout would only fail later."""
        value = self._get(key, int, _REQUIRED if default is None else default)
        if value < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {value}")
        return int(value)

    def number(self, key: str, default: float) -> float:
        """A finite number more than 0, whole or not (`0.5`): for waits shorter than a second."""
        value = self._data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected int or float, got {type(value).__name__}")
        if not (math.isfinite(value) and value > 0):
            raise self.fail(key, f"must be more than 0 and finite, got {value}")
        return float(value)

    def texts(self, key: str, default: list[str] | None = None) -> list[str]:
        values = self._get(key, list, _REQUIRED if default is None else default)
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise self.fail(f"{key}[{i}]", f"expected str, got {type(value).__name__}")
        return list(values)

    def path(self, key: str) -> Path:
        return self.resolve(self.text(key))

    def existing_path(self, key: str) -> Path:
        path = self.path(key)
        if not path.exists():
            raise self.fail(key, f"file not found: {path}")
        return path

    def existing_paths(self, key: str, default: list[str] | None = None) -> list[Path]:
        paths = [self.resolve(p) for p in self.texts(key, default)]
        for i, path in enumerate(paths):
            if not path.exists():
                raise self.fail(f"{key}[{i}]", f"file not found: {path}")
        return paths

    def resolve(self, value: str) -> Path:
        """Relative paths are relative to the configuration file, not to the working directory."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.file.parent / path

    def table(self, key: str) -> Table:
        value = self._get(key, dict, _REQUIRED)
        return Table(value, self.key_path(key), self.file)

    def tables(self, key: str) -> dict[str, Table]:
        parent = self.table(key)
        return {name: parent.table(name) for name in parent.names()}

    def optional_table(self, key: str) -> Table | None:
        return self.table(key) if key in self._data else None

    def array(self, key: str) -> list[Table]:
        """An array of tables (`[[key]]`), each named `key[i]` in errors."""
        values = self._get(key, list, [])
        tables = []
        for i, value in enumerate(values):
            if not isinstance(value, dict):
                raise self.fail(f"{key}[{i}]", f"expected a table, got {type(value).__name__}")
            tables.append(Table(value, self.key_path(f"{key}[{i}]"), self.file))
        return tables

    def day(self, key: str) -> date | None:
        """A TOML date (`2020-10-29`, unquoted), or None when absent."""
        value = self._get(key, date, None)
        if isinstance(value, datetime):
            raise self.fail(key, "expected a date such as 2020-10-29, got a date and time")
        return value if isinstance(value, date) else None

    def moment(self, key: str) -> datetime:
        """A required TOML date-time with an offset (`2021-03-01T00:00:00Z`, unquoted), in UTC."""
        value = self._get(key, datetime, _REQUIRED)
        if value.tzinfo is None:
            raise self.fail(key, "needs a UTC offset, such as 2021-03-01T00:00:00Z")
        return value.astimezone(UTC)  # type: ignore[no-any-return]

    def text_map(self, key: str) -> dict[str, str]:
        """An inline table of strings: `{ "JPRS" = "jprs" }`."""
        values = self._get(key, dict, {})
        for name, value in values.items():
            if not isinstance(value, str):
                raise self.fail(f"{key}.{name}", f"expected str, got {type(value).__name__}")
        return dict(values)


_REQUIRED = object()
