"""A mark on live objects, by identity: what was already checked of an immutable object.

A decoded snapshot is immutable, and a daemon meets the same object again in its next cycle
(agent.exchange.recent_snapshots). A check that depends on nothing but the object can be
marked as done on it. Frozen dataclasses hash by value (100,000 records for a snapshot), so
the marks are kept by `id`, each with a weak reference that confirms the object is the one
marked and drops the mark when the object goes.
"""

from __future__ import annotations

import threading
import weakref
from typing import Generic, TypeVar

T = TypeVar("T")


class ObjectMarks(Generic[T]):
    """Objects marked, held weakly, by identity."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marked: dict[int, weakref.ref[T]] = {}

    def add(self, obj: T) -> None:
        key = id(obj)

        def gone(_: weakref.ref[T]) -> None:
            with self._lock:
                if self._marked.get(key) is ref:
                    del self._marked[key]

        ref = weakref.ref(obj, gone)
        with self._lock:
            self._marked[key] = ref

    def holds(self, obj: T) -> bool:
        with self._lock:
            ref = self._marked.get(id(obj))
        return ref is not None and ref() is obj

    def __len__(self) -> int:
        with self._lock:
            return len(self._marked)
