"""The evidence bundle format, `invsync-evidence/1`: a directory of files an auditor verifies
offline (docs/evidence.md).

    manifest.json            format, server (name and checkpoint origin), scope (one pairing or
                             all), created_at, and the SHA-256 of every other file
    entries.json             every index of the log up to the latest checkpoint, in log order:
                             the entry's bytes exactly as served (base64), or, for an entry
                             outside the scope or withheld from the exporter, its leaf hash only
    checkpoints/NNNNNN.note  every checkpoint note the exporter has, ascending by tree size, as
                             signed (C2SP signed notes that other tooling reads too)
    proofs/consistency.json  a consistency proof between each two consecutive checkpoint sizes
    proofs/inclusion.json    the inclusion proof of each exported entry in the latest checkpoint
    keys.json                the server's and the parties' public keys (PEM) and the rotations
                             the exported entries announce

This module is the model and its JSON; `directory.py` writes and reads the directory. Nothing
here judges trust: a bundle's keys are candidates that `verify` trusts only through pins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import serialization

from invsync.agent.errors import InvsyncError
from invsync.agent.evidence import fields as f
from invsync.agent.evidence.failures import BundleError
from invsync.agent.exchange.keys import VerifyKey, verify_key_from_spki_der
from invsync.agent.model.findings import parse_rfc3339
from invsync.agent.times import rfc3339

FORMAT = "invsync-evidence/1"
MANIFEST = "manifest.json"
ENTRIES = "entries.json"
KEYS = "keys.json"
CONSISTENCY = "proofs/consistency.json"
INCLUSION = "proofs/inclusion.json"
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class Scope:
    """What a bundle holds in full: every entry of the log (neither field set: the server's
    export), one pairing's entries (`pairing`), or the entries of the pairings one party belongs
    to (`party`: an agent's export, as the server serves that party).

    The scope is an unsigned label in the manifest: `verify` checks that the bundle is what its
    label says (check 7, agent/evidence/withheld.py), so a label can only narrow what a reader
    may expect, never hide a withheld entry behind "all"."""

    pairing: str | None = None
    party: str | None = None

    def covers(self, pairing: str) -> bool:
        return self.pairing is None or pairing == self.pairing

    def __str__(self) -> str:
        if self.pairing is not None:
            return f"pairing {self.pairing}"
        return "all pairings" if self.party is None else f"pairings of party {self.party}"

    def to_json(self) -> dict[str, str]:
        if self.pairing is not None:
            return {"kind": "pairing", "pairing": self.pairing}
        return {"kind": "all"} if self.party is None else {"kind": "party", "party": self.party}

    @classmethod
    def from_json(cls, value: object, where: str) -> Scope:
        data = f.obj(value, where)
        kind = f.text(data, "kind", where)
        if kind == "all":
            return cls()
        if kind in ("pairing", "party"):
            name = f.text(data, kind, where)
            if not name:
                raise BundleError(f"{where}: field {kind!r} is empty")
            return cls(pairing=name) if kind == "pairing" else cls(party=name)
        raise BundleError(f"{where}: scope kind {kind!r} is not 'all', 'pairing' or 'party'")


@dataclass(frozen=True)
class BundleEntry:
    """The log's entry at `index`: its exact bytes, or only its leaf hash when withheld."""

    index: int
    leaf: bytes = b""
    leaf_hash: bytes = b""  # set only for a withheld entry

    @property
    def withheld(self) -> bool:
        return not self.leaf


@dataclass(frozen=True)
class CheckpointFile:
    name: str  # the file's path in the bundle, e.g. "checkpoints/000003.note"
    note: bytes


@dataclass(frozen=True)
class ConsistencyProof:
    first: int
    second: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class RotationRecord:
    """A key rotation an exported KEY_ANNOUNCEMENT entry holds, as key ids."""

    party: str
    pairing: str
    version: int
    entry: int
    new_key: str
    old_keys: tuple[str, ...]


@dataclass(frozen=True)
class BundleKeys:
    server: tuple[VerifyKey, ...]
    parties: Mapping[str, tuple[VerifyKey, ...]]
    rotations: tuple[RotationRecord, ...] = ()

    def by_id(self) -> dict[str, VerifyKey]:
        """Every key of the file by key id, whoever it is listed for: a pin decides whose it is."""
        keys = {key.keyid: key for key in self.server}
        for listed in self.parties.values():
            keys.update({key.keyid: key for key in listed})
        return keys


@dataclass(frozen=True)
class Bundle:
    server: str  # the server's configured name: checkpoint origin and key name
    scope: Scope
    created_at: datetime
    entries: tuple[BundleEntry, ...]
    checkpoints: tuple[CheckpointFile, ...]
    consistency: tuple[ConsistencyProof, ...]
    inclusion_size: int  # the tree size every inclusion proof is for: the latest checkpoint's
    inclusion: Mapping[int, tuple[bytes, ...]]
    keys: BundleKeys


@dataclass(frozen=True)
class Manifest:
    server: str
    origin: str
    scope: Scope
    created_at: datetime
    files: Mapping[str, str] = field(default_factory=dict)  # path -> lowercase hex SHA-256


# --- writing ----------------------------------------------------------------------------------


def bundle_files(bundle: Bundle) -> dict[str, bytes]:
    """Every file of the bundle but the manifest, by path."""
    files = {
        ENTRIES: f.dump({"entries": [_entry_json(e) for e in bundle.entries]}),
        KEYS: f.dump(_keys_json(bundle.keys)),
        CONSISTENCY: f.dump({"proofs": [_consistency_json(p) for p in bundle.consistency]}),
        INCLUSION: f.dump(_inclusion_json(bundle)),
    }
    files.update({c.name: c.note for c in bundle.checkpoints})
    return files


def checkpoint_name(number: int) -> str:
    return f"{CHECKPOINTS}/{number:06d}.note"


def manifest_json(manifest: Manifest) -> bytes:
    return f.dump(
        {
            "format": FORMAT,
            "server": {"name": manifest.server, "origin": manifest.origin},
            "scope": manifest.scope.to_json(),
            "created_at": rfc3339(manifest.created_at),
            "files": dict(sorted(manifest.files.items())),
        }
    )


def _entry_json(entry: BundleEntry) -> dict[str, object]:
    if entry.withheld:
        return {"index": entry.index, "leaf_hash": f.encode_b64(entry.leaf_hash)}
    return {"index": entry.index, "leaf": f.encode_b64(entry.leaf)}


def _keys_json(keys: BundleKeys) -> dict[str, object]:
    return {
        "server": [_key_json(k) for k in keys.server],
        "parties": {name: [_key_json(k) for k in listed] for name, listed in keys.parties.items()},
        "rotations": [
            {
                "party": r.party,
                "pairing": r.pairing,
                "version": r.version,
                "entry": r.entry,
                "new_key": r.new_key,
                "old_keys": list(r.old_keys),
            }
            for r in keys.rotations
        ],
    }


def _key_json(key: VerifyKey) -> dict[str, str]:
    return {"keyid": key.keyid, "pem": key.public_pem().decode("ascii")}


def _consistency_json(proof: ConsistencyProof) -> dict[str, object]:
    hashes = [f.encode_b64(h) for h in proof.hashes]
    return {"first": proof.first, "second": proof.second, "hashes": hashes}


def _inclusion_json(bundle: Bundle) -> dict[str, object]:
    proofs = [
        {"index": index, "hashes": [f.encode_b64(h) for h in hashes]}
        for index, hashes in sorted(bundle.inclusion.items())
    ]
    return {"tree_size": bundle.inclusion_size, "proofs": proofs}


# --- reading ----------------------------------------------------------------------------------


def read_manifest_json(data: bytes) -> Manifest:
    where = MANIFEST
    obj = f.parse_json(data, where)
    if obj.get("format") != FORMAT:
        raise BundleError(f"{where}: format {obj.get('format')!r} is not {FORMAT!r}")
    server = f.obj(f.field(obj, "server", where), f"{where}: server")
    listed = f.obj(f.field(obj, "files", where), f"{where}: files")
    files = {
        str(path): _digest(value, f"{where}: files[{path!r}]") for path, value in listed.items()
    }
    created = f.text(obj, "created_at", where)
    name, origin = f.text(server, "name", where), f.text(server, "origin", where)
    if origin != name:  # invsync servers sign checkpoints under their name as origin
        raise BundleError(f"{where}: server origin {origin!r} is not its name {name!r}")
    return Manifest(
        server=name,
        origin=origin,
        scope=Scope.from_json(f.field(obj, "scope", where), f"{where}: scope"),
        created_at=_time(created, f"{where}: created_at"),
        files=files,
    )


def read_bundle_files(manifest: Manifest, files: Mapping[str, bytes]) -> Bundle:
    """The bundle the manifest's files hold; BundleError names the file and field."""
    inclusion = f.parse_json(_file(files, INCLUSION), INCLUSION)
    notes = sorted(name for name in files if name.startswith(CHECKPOINTS + "/"))
    return Bundle(
        server=manifest.server,
        scope=manifest.scope,
        created_at=manifest.created_at,
        entries=_entries(f.parse_json(_file(files, ENTRIES), ENTRIES)),
        checkpoints=tuple(CheckpointFile(name, files[name]) for name in notes),
        consistency=_consistency(f.parse_json(_file(files, CONSISTENCY), CONSISTENCY)),
        inclusion_size=f.integer(inclusion, "tree_size", INCLUSION),
        inclusion=_inclusion(inclusion),
        keys=_keys(f.parse_json(_file(files, KEYS), KEYS)),
    )


def _file(files: Mapping[str, bytes], name: str) -> bytes:
    if name not in files:
        raise BundleError(f"{MANIFEST}: lists no {name}")
    return files[name]


def _digest(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or value.strip("0123456789abcdef"):
        raise BundleError(f"{where}: not a lowercase hex SHA-256")
    return value


def _time(value: str, where: str) -> datetime:
    try:
        return parse_rfc3339(value, where)
    except InvsyncError as e:
        raise BundleError(str(e)) from e


def _entries(obj: Mapping[str, Any]) -> tuple[BundleEntry, ...]:
    return tuple(
        _entry(item, f"{ENTRIES}: entries[{n}]")
        for n, item in enumerate(f.items(obj, "entries", ENTRIES))
    )


def _entry(item: object, where: str) -> BundleEntry:
    data = f.obj(item, where)
    index = f.integer(data, "index", where)
    if ("leaf" in data) == ("leaf_hash" in data):
        raise BundleError(f"{where}: needs exactly one of 'leaf' and 'leaf_hash'")
    if "leaf" in data:
        leaf = f.b64(data, "leaf", where)
        if not leaf:
            raise BundleError(f"{where}: field 'leaf' is empty")
        return BundleEntry(index, leaf=leaf)
    return BundleEntry(index, leaf_hash=f.b64(data, "leaf_hash", where))


def _hashes(data: Mapping[str, Any], where: str) -> tuple[bytes, ...]:
    return tuple(
        f.decode_b64(h, f"{where}: hashes[{n}]")
        for n, h in enumerate(f.items(data, "hashes", where))
    )


def _consistency(obj: Mapping[str, Any]) -> tuple[ConsistencyProof, ...]:
    proofs = []
    for n, item in enumerate(f.items(obj, "proofs", CONSISTENCY)):
        where = f"{CONSISTENCY}: proofs[{n}]"
        data = f.obj(item, where)
        first, second = f.integer(data, "first", where), f.integer(data, "second", where)
        proofs.append(ConsistencyProof(first, second, _hashes(data, where)))
    return tuple(proofs)


def _inclusion(obj: Mapping[str, Any]) -> dict[int, tuple[bytes, ...]]:
    proofs: dict[int, tuple[bytes, ...]] = {}
    for n, item in enumerate(f.items(obj, "proofs", INCLUSION)):
        where = f"{INCLUSION}: proofs[{n}]"
        data = f.obj(item, where)
        index = f.integer(data, "index", where)
        if index in proofs:
            raise BundleError(f"{where}: a second proof for entry {index}")
        proofs[index] = _hashes(data, where)
    return proofs


def _keys(obj: Mapping[str, Any]) -> BundleKeys:
    parties = f.obj(f.field(obj, "parties", KEYS), f"{KEYS}: parties")
    return BundleKeys(
        server=_key_list(f.items(obj, "server", KEYS), f"{KEYS}: server"),
        parties={
            str(name): _key_list(listed, f"{KEYS}: parties[{name!r}]")
            for name, listed in parties.items()
        },
        rotations=tuple(
            _rotation(item, f"{KEYS}: rotations[{n}]")
            for n, item in enumerate(f.items(obj, "rotations", KEYS))
        ),
    )


def _key_list(value: object, where: str) -> tuple[VerifyKey, ...]:
    if not isinstance(value, list):
        raise BundleError(f"{where}: must be a list of keys")
    return tuple(_key(item, f"{where}[{n}]") for n, item in enumerate(value))


def _key(item: object, where: str) -> VerifyKey:
    data = f.obj(item, where)
    key = key_from_pem(f.text(data, "pem", where), where)
    if f.text(data, "keyid", where) != key.keyid:
        raise BundleError(f"{where}: keyid is not the SHA-256 of the key")
    return key


def key_from_pem(pem: str, where: str) -> VerifyKey:
    """A public key from PEM SubjectPublicKeyInfo; BundleError if it is none invsync uses."""
    try:
        public = serialization.load_pem_public_key(pem.encode())
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return verify_key_from_spki_der(der, source=where)
    except (ValueError, TypeError, InvsyncError) as e:
        raise BundleError(f"{where}: not a usable PEM public key ({e})") from e


def _rotation(item: object, where: str) -> RotationRecord:
    data = f.obj(item, where)
    old = f.items(data, "old_keys", where)
    if not all(isinstance(k, str) for k in old):
        raise BundleError(f"{where}: field 'old_keys' must list key ids")
    return RotationRecord(
        party=f.text(data, "party", where),
        pairing=f.text(data, "pairing", where),
        version=f.integer(data, "version", where),
        entry=f.integer(data, "entry", where),
        new_key=f.text(data, "new_key", where),
        old_keys=tuple(str(k) for k in old),
    )
