"""A few values kept by key for reuse, at most so many: decoding and storing 100,000 records
meets the same few sources, times and lengths again and again (issue 13), and each value is
immutable, so one made once serves every record. Emptied when full, so input of many distinct
values costs at most `most` entries, never a growing map."""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Kept(Generic[K, V]):
    def __init__(self, most: int = 4096) -> None:
        self._most = most
        self._values: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._values.get(key)

    def keep(self, key: K, value: V) -> V:
        """Keep `value` under `key`; `value`. Plain dict operations: safe to share between
        threads under the GIL (two threads making one value keep either)."""
        if len(self._values) >= self._most:
            self._values.clear()
        self._values[key] = value
        return value

    def clear(self) -> None:
        """Forget every value (a benchmark's runs must each start from nothing)."""
        self._values.clear()

    def __len__(self) -> int:
        return len(self._values)
