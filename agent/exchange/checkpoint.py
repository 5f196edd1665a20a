"""Checkpoints of the exchange's log in the C2SP tlog-checkpoint format, signed as C2SP signed
notes (c2sp.org/tlog-checkpoint, c2sp.org/signed-note@v1), so that existing transparency
tooling can read them.

A checkpoint body is at least three non-empty lines, each ending in a newline: the log's origin,
the tree size in ASCII decimal without sign or leading zeros, and the root hash in standard
base64 (32 bytes for SHA-256). Any further lines are extension lines: opaque and non-empty. They
stay in the note and under its signatures, and `open_checkpoint` accepts and ignores them.

A signed note is the body, a blank line, and one to MAX_SIGNATURES signature lines, each
"— <key name> <base64(4-byte key ID || signature)>" and a newline; the body is the text before
the last blank line, including its final newline. The whole note must be UTF-8 without control
characters other than newline, and at most MAX_NOTE_BYTES long (the spec asks verifiers to
bound it; 16 signature lines of the key types below fit with room to spare, post-quantum
cosignatures would not).

`open_checkpoint` checks the note's syntax, then the signatures over the exact body bytes, and
only then parses the body. A signature line whose key name and key ID do not match a pinned key
is ignored, as the spec requires (another party's cosignature, a rotated key); a line that does
match a pinned key but does not verify rejects the whole note; at least one must verify.

Key types (the signed-note signature type byte, and the key ID = first 4 bytes of a SHA-256):

- Ed25519, type 0x01, the default and recommended: the RFC 8032 signature over the body; key ID
  SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]. Any C2SP tool reads it.
- ECDSA P-256, type 0x02, as registered by signed-note ("ECDSA signatures as implemented by
  github.com/transparency-dev/witness", the format of Sigstore's Rekor checkpoints): the ASN.1
  DER ECDSA signature over SHA-256 of the body; key ID SHA-256(SubjectPublicKeyInfo DER)[:4],
  without the key name. That is exactly what an invsync P-256 key signs, so it interoperates.
- ECDSA P-384: type 0x02 is specified with SHA-256 for every curve, while an invsync P-384 key
  signs with SHA-384 only (agent/exchange/keys.py: the curve fixes the hash). So P-384 uses
  the byte reserved for types without an assigned byte, 0xff, followed by the identifier
  "invsync/ecdsa-p384-sha384" (P384_SIGNATURE_TYPE): the DER ECDSA signature over SHA-384 of
  the body; key ID SHA-256(key name || 0x0A || P384_SIGNATURE_TYPE || SPKI DER)[:4]. Only
  invsync verifies these; use Ed25519 (or P-256) where other tools must read the checkpoints.

`verifier_key` and `parse_verifier_key` write and read a key in the signed-note verifier key
text form "<name>+<hex key ID>+<base64(type || public key)>".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from invsync.agent.errors import KeyLoadError, SignatureError, bounded
from invsync.agent.exchange.keys import SigningKey, VerifyKey, verify_key_from_spki_der

SIGNATURE_PREFIX = "\u2014 "  # "— ": an em dash and a space start every signature line
MAX_NOTE_BYTES = 8192
MAX_SIGNATURES = 16  # the least the spec lets a verifier accept
MAX_TREE_SIZE = 2**64 - 1
HASH_SIZE = 32

ED25519_SIGNATURE_TYPE = b"\x01"
ECDSA_SIGNATURE_TYPE = b"\x02"
P384_SIGNATURE_TYPE = b"\xff" + b"invsync/ecdsa-p384-sha384"

_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_TREE_SIZE = re.compile(r"0|[1-9][0-9]*")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


class BadCheckpoint(SignatureError):
    """A checkpoint is malformed, or no signature on it verifies with a pinned key."""

    hint = "Pin the exchange server's checkpoint key (its signing key); then fetch it again."


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> bytes:
        root = base64.b64encode(self.root).decode()
        return f"{self.origin}\n{self.size}\n{root}\n".encode()


def key_hash(name: str, key: VerifyKey) -> bytes:
    """The 4-byte key ID that tells which key made a signature line (C2SP signed-note)."""
    if key.kind == "ecdsa-p256":
        return hashlib.sha256(key.spki_der).digest()[:4]
    material = name.encode() + b"\n" + _signature_type(key) + _public_bytes(key)
    return hashlib.sha256(material).digest()[:4]


def verifier_key(name: str, key: VerifyKey) -> str:
    """`key` as a signed-note verifier key: "<name>+<hex key ID>+<base64(type || key)>"."""
    _check_name(name)
    encoded = base64.b64encode(_signature_type(key) + _public_bytes(key)).decode()
    return f"{name}+{key_hash(name, key).hex()}+{encoded}"


def parse_verifier_key(vkey: str) -> tuple[str, VerifyKey]:
    """The key name and key of a signed-note verifier key of a type invsync signs with;
    KeyLoadError if it is malformed, of another type, or its key ID does not match."""
    name, _, rest = vkey.partition("+")
    key_id, _, encoded = rest.partition("+")
    where = f"verifier key {name!r}"
    if not _valid_name(name) or not re.fullmatch(r"[0-9a-fA-F]{8}", key_id):
        raise KeyLoadError(f"{where}: not <name>+<8 hex digits>+<base64 key>")
    material = _b64decode(encoded)
    if material is None:
        raise KeyLoadError(f"{where}: the key is not canonical base64")
    if material[:1] == ED25519_SIGNATURE_TYPE and len(material) == 33:
        key = verify_key_from_spki_der(_ED25519_SPKI_PREFIX + material[1:], source=where)
    elif material[:1] == ECDSA_SIGNATURE_TYPE:
        key = verify_key_from_spki_der(material[1:], source=where)
    elif material.startswith(P384_SIGNATURE_TYPE):
        key = verify_key_from_spki_der(material[len(P384_SIGNATURE_TYPE) :], source=where)
    else:
        raise KeyLoadError(f"{where}: not an Ed25519, ECDSA P-256 or invsync P-384 key")
    if _signature_type(key) + _public_bytes(key) != material:
        raise KeyLoadError(f"{where}: the key type does not match the key")
    if key_hash(name, key).hex() != key_id.lower():
        raise KeyLoadError(f"{where}: the key ID {key_id} does not match the key")
    return name, key


def sign_checkpoint(checkpoint: Checkpoint, name: str, key: SigningKey, *also: SigningKey) -> bytes:
    """The signed note of `checkpoint` under `name`, signed by `key` (and by each of `also`,
    a line each: a server rotating its key signs the checkpoint of its announcement with both);
    ValueError if the checkpoint or name cannot be written as a valid note."""
    _check_name(name)
    _check_checkpoint(checkpoint)
    body = checkpoint.body()
    lines = []
    for signer in (key, *also):
        blob = key_hash(name, signer.public) + signer.sign(body)
        lines.append(f"{SIGNATURE_PREFIX}{name} {base64.b64encode(blob).decode()}\n")
    note = body + b"\n" + "".join(lines).encode()
    if len(note) > MAX_NOTE_BYTES:
        raise ValueError(f"cannot sign checkpoint: the note would be over {MAX_NOTE_BYTES} bytes")
    return note


def open_checkpoint(note: bytes, origin: str, keys: Mapping[str, VerifyKey]) -> Checkpoint:
    """The checkpoint of a signed note, once a signature by one of `keys` (name -> key) verifies
    over its body, none by them fails, and the body names `origin`; BadCheckpoint otherwise."""
    body, lines = _split_note(note)
    verified = False
    for number, line in enumerate(lines, start=1):
        name, key_id, signature = _parse_signature_line(number, line)
        key = keys.get(name)
        if key is None or key_id != key_hash(name, key):
            continue  # an unknown key: ignored, as signed-note requires
        if not key.verify(signature, body):
            raise BadCheckpoint(
                f"checkpoint: the signature by pinned key {bounded(name)} does not verify"
            )
        verified = True
    if not verified:
        raise BadCheckpoint(
            f"checkpoint of {bounded(origin)}: no signature by a pinned key verifies"
        )
    checkpoint = _parse_body(body)
    if checkpoint.origin != origin:
        raise BadCheckpoint(
            f"checkpoint names origin {bounded(checkpoint.origin)!r}, not {bounded(origin)!r}"
        )
    return checkpoint


def open_pinned(note: bytes, name: str, keys: Iterable[VerifyKey]) -> Checkpoint:
    """`open_checkpoint` under `name` (origin and key name) with each of the signer's pinned
    `keys` in turn: a note names one key per key name, and a signer may have several pinned
    (while it rotates). BadCheckpoint from the last key tried when none opens it."""
    problem = BadCheckpoint(f"checkpoint of {bounded(name)}: no key is pinned for it")
    for key in keys:
        try:
            return open_checkpoint(note, name, {name: key})
        except BadCheckpoint as e:
            problem = e
    raise problem


def claimed_checkpoint(note: bytes) -> Checkpoint | None:
    """The checkpoint a note's body claims, its signatures NOT checked; None for anything that
    is no well-formed note. Only where no key is at hand, to compare two claims that their
    makers signed elsewhere (a pure reconcile rule on two snapshot headers): never to trust a
    log, which `open_checkpoint` alone does."""
    try:
        body, _ = _split_note(note)
        return _parse_body(body)
    except BadCheckpoint:
        return None


def claimed_origin(note: bytes) -> str:
    """The origin a note's first line claims, unverified: only a name to try opening the note
    under (`open_pinned` then requires a pinned key's signature under that very name)."""
    return note.split(b"\n", 1)[0].decode("utf-8", "replace")


def _split_note(note: bytes) -> tuple[bytes, list[str]]:
    if len(note) > MAX_NOTE_BYTES:
        raise BadCheckpoint(
            f"checkpoint: the note is {len(note)} bytes, over the limit of {MAX_NOTE_BYTES}"
        )
    try:
        text = note.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadCheckpoint("checkpoint: the note is not UTF-8") from e
    control = _CONTROL.search(text)
    if control:
        code = ord(control.group())
        raise BadCheckpoint(f"checkpoint: the note contains the control character U+{code:04X}")
    split = text.rfind("\n\n")
    if split < 0:
        raise BadCheckpoint("checkpoint: not a signed note (no blank line after the body)")
    signatures = text[split + 2 :]
    if not signatures:
        raise BadCheckpoint("checkpoint: the note has no signature lines")
    if not signatures.endswith("\n"):
        raise BadCheckpoint("checkpoint: the last signature line does not end in a newline")
    lines = signatures[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise BadCheckpoint(
            f"checkpoint: {len(lines)} signature lines, over the limit of {MAX_SIGNATURES}"
        )
    return text[: split + 1].encode(), lines


def _parse_signature_line(number: int, line: str) -> tuple[str, bytes, bytes]:
    if not line.startswith(SIGNATURE_PREFIX):
        raise BadCheckpoint(
            f"checkpoint: signature line {number} does not start with an em dash and a space"
        )
    name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not _valid_name(name):
        raise BadCheckpoint(f"checkpoint: signature line {number} has no valid key name")
    blob = _b64decode(encoded)
    if blob is None or len(blob) < 5:
        raise BadCheckpoint(
            f"checkpoint: signature line {number} is not base64 of a key ID and a signature"
        )
    return name, blob[:4], blob[4:]


def _parse_body(body: bytes) -> Checkpoint:
    lines = body.decode()[:-1].split("\n")  # UTF-8 and ending in a newline: _split_note
    if len(lines) < 3:
        raise BadCheckpoint(
            f"checkpoint: the body has {len(lines)} line(s), not the 3 of origin, tree size "
            "and root hash"
        )
    for number, line in enumerate(lines, start=1):
        if not line:
            raise BadCheckpoint(f"checkpoint: line {number} of the body is empty")
    origin, size, encoded = lines[:3]
    shown = size if len(size) <= 24 else size[:24] + "..."
    if not _TREE_SIZE.fullmatch(size):
        raise BadCheckpoint(
            f"checkpoint: tree size {shown!r} is not a decimal number without sign or leading zeros"
        )
    if len(size) > len(str(MAX_TREE_SIZE)) or int(size) > MAX_TREE_SIZE:
        raise BadCheckpoint(f"checkpoint: tree size {shown} is over 2^64 - 1")
    root = _b64decode(encoded)
    if root is None or len(root) != HASH_SIZE:
        raise BadCheckpoint(f"checkpoint: the root hash is not base64 of {HASH_SIZE} bytes")
    return Checkpoint(origin, int(size), root)


def _b64decode(encoded: str) -> bytes | None:
    """The bytes of canonical standard base64 (padded, no stray bits), else None: so that
    no two spellings of one signature or root hash are both accepted."""
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded if base64.b64encode(decoded).decode() == encoded else None


def _valid_name(name: str) -> bool:
    """signed-note: a key name is non-empty, without Unicode spaces or '+'."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def _check_name(name: str) -> None:
    if not _valid_name(name) or _CONTROL.search(name) or not _encodable(name):
        raise ValueError(f"cannot sign checkpoint: {name!r} is not a signed-note key name")


def _check_checkpoint(checkpoint: Checkpoint) -> None:
    origin = checkpoint.origin
    if not origin or "\n" in origin or _CONTROL.search(origin) or not _encodable(origin):
        raise ValueError(f"cannot sign checkpoint: {origin!r} is not a one-line origin")
    if not 0 <= checkpoint.size <= MAX_TREE_SIZE:
        raise ValueError(f"cannot sign checkpoint: tree size {checkpoint.size} is out of range")
    if len(checkpoint.root) != HASH_SIZE:
        raise ValueError(
            f"cannot sign checkpoint: the root hash is {len(checkpoint.root)} bytes, "
            f"not {HASH_SIZE}"
        )


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _signature_type(key: VerifyKey) -> bytes:
    if key.kind == "ed25519":
        return ED25519_SIGNATURE_TYPE
    if key.kind == "ecdsa-p256":
        return ECDSA_SIGNATURE_TYPE
    return P384_SIGNATURE_TYPE


def _public_bytes(key: VerifyKey) -> bytes:
    if key.kind == "ed25519":
        # An Ed25519 SubjectPublicKeyInfo is a fixed 12-byte prefix and the raw 32-byte key.
        if not key.spki_der.startswith(_ED25519_SPKI_PREFIX) or len(key.spki_der) != 44:
            raise ValueError("an Ed25519 key whose SubjectPublicKeyInfo is not the usual 44 bytes")
        return key.spki_der[len(_ED25519_SPKI_PREFIX) :]
    return key.spki_der
