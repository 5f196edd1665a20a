"""A snapshot's records by SHA-256, kept for the reconciliation after (issue 13).

A reconciliation indexes both current sides, and `disappeared` both previous ones: four dicts of
100,000 records at 100,000 certificates, 0.3 s a cycle in a large heap. A daemon's previous
snapshot is the object its last cycle compared as current (agent.exchange.recent_snapshots), so
the index it made then serves again. A snapshot's records are a tuple, immutable: its index is
kept by the tuple's identity, with the tuple itself (so the identity cannot be reused), for the
last few tuples only. The index is read-only, as it is shared.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from invsync.agent.model.record import SHA256_OF as _SHA256
from invsync.agent.model.record import CertRecord

# A reconciliation's four sides, and the next one's two current sides.
KEPT = 6

_KEPT: OrderedDict[int, tuple[tuple[CertRecord, ...], Mapping[str, CertRecord]]] = OrderedDict()
_LOCK = threading.Lock()


def by_sha256(records: Sequence[CertRecord]) -> Mapping[str, CertRecord]:
    """`records` by SHA-256, in their order; a later duplicate replaces an earlier one. Kept
    for a tuple of records, worked out afresh for any other sequence."""
    if type(records) is not tuple or not records:  # () is every first version's previous
        return _indexed(records)
    with _LOCK:
        kept = _KEPT.get(id(records))
        if kept is not None and kept[0] is records:
            _KEPT.move_to_end(id(records))
            return kept[1]
    index = _indexed(records)
    with _LOCK:
        _KEPT[id(records)] = (records, index)
        while len(_KEPT) > KEPT:
            _KEPT.popitem(last=False)
    return index


def forget() -> None:
    """Keep nothing (a test, or a process letting go of its snapshots)."""
    with _LOCK:
        _KEPT.clear()


def _indexed(records: Sequence[CertRecord]) -> Mapping[str, CertRecord]:
    return MappingProxyType(dict(zip(map(_SHA256, records), records, strict=True)))
