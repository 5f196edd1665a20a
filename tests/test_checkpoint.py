"""Checkpoints as C2SP signed notes (agent/exchange/checkpoint.py): published checkpoints with
their keys (tests/fixtures/merkle/checkpoints, PROVENANCE.md there), the format's limits with
their messages pinned, and Hypothesis fuzzing: no input makes anything but BadCheckpoint escape,
and no single-byte change to a signed note is accepted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invsync.agent.errors import KeyLoadError, SignatureError
from invsync.agent.exchange.checkpoint import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    MAX_TREE_SIZE,
    P384_SIGNATURE_TYPE,
    BadCheckpoint,
    Checkpoint,
    key_hash,
    open_checkpoint,
    parse_verifier_key,
    sign_checkpoint,
    verifier_key,
)
from invsync.agent.exchange.keys import SigningKey, generate
from tests.paths import FIXTURES

VECTORS: list[dict[str, Any]] = json.loads(
    (FIXTURES / "merkle" / "checkpoints" / "vectors.json").read_text()
)["vectors"]
CHECKPOINT_VECTORS = [v for v in VECTORS if v["kind"] == "checkpoint"]
NOTE_VECTORS = [v for v in VECTORS if v["kind"] == "note"]

ORIGIN = "exchange.example/log"
NAME = ORIGIN
ED = generate("ed25519")
P256 = generate("ecdsa-p256")
P384 = generate("ecdsa-p384")
OTHER = generate("ed25519")
ROOT = hashlib.sha256(b"a root").digest()
ROOT_B64 = base64.b64encode(ROOT).decode()
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
CHECKPOINT = Checkpoint(ORIGIN, 42, ROOT)
KEYS = {NAME: ED.public}

FUZZ = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def line(name: str, key: SigningKey, body: bytes, key_id: bytes | None = None) -> str:
    """A signature line by `key` under `name` over `body`, written out by hand."""
    blob = (key_hash(name, key.public) if key_id is None else key_id) + key.sign(body)
    return f"\u2014 {name} {base64.b64encode(blob).decode()}\n"


def note(body: str, *lines: str) -> bytes:
    return (body + "\n" + "".join(lines)).encode()


def signed(body: str, key: SigningKey = ED, name: str = NAME) -> bytes:
    return note(body, line(name, key, body.encode()))


# Published checkpoints and notes.


def test_the_vector_file_holds_every_published_example() -> None:
    assert [v["name"] for v in VECTORS] == [
        "sum.golang.org",
        "sigsum-test-log",
        "rekor.sigstore.dev",
        "pixel6_transparency_log",
        "rekor.sigstore.dev-production-with-extension-line",
        "c2sp-signed-note-example",
    ]


@pytest.mark.parametrize("vector", CHECKPOINT_VECTORS, ids=[v["name"] for v in CHECKPOINT_VECTORS])
def test_a_published_checkpoint_opens_with_its_published_key(vector: dict[str, Any]) -> None:
    name, key = parse_verifier_key(vector["vkey"])
    assert key.kind == vector["signature_type"]
    assert verifier_key(name, key) == vector["vkey"]
    assert key_hash(name, key).hex() == vector["vkey"].split("+")[1]
    opened = open_checkpoint(vector["note"].encode(), vector["origin"], {name: key})
    root = base64.b64decode(vector["root"])
    assert opened == Checkpoint(vector["origin"], vector["size"], root)
    # The extension lines are in the signed body and nowhere in what is returned.
    body = vector["note"][: vector["note"].rindex("\n\n") + 1]
    assert body.split("\n")[3:-1] == vector["extension_lines"]


def test_a_published_checkpoint_may_carry_extension_lines() -> None:
    assert [v["name"] for v in CHECKPOINT_VECTORS if v["extension_lines"]] == [
        "rekor.sigstore.dev-production-with-extension-line"
    ]


@pytest.mark.parametrize("vector", CHECKPOINT_VECTORS, ids=[v["name"] for v in CHECKPOINT_VECTORS])
def test_a_published_checkpoint_with_any_byte_changed_is_refused(vector: dict[str, Any]) -> None:
    name, key = parse_verifier_key(vector["vkey"])
    data = vector["note"].encode()
    for position in range(len(data)):
        for mask in (0x01, 0x20, 0x80):
            changed = bytearray(data)
            changed[position] ^= mask
            with pytest.raises(BadCheckpoint):
                open_checkpoint(bytes(changed), vector["origin"], {name: key})


@pytest.mark.parametrize("vector", NOTE_VECTORS, ids=[v["name"] for v in NOTE_VECTORS])
def test_the_signed_note_spec_example_verifies_but_is_no_checkpoint(
    vector: dict[str, Any],
) -> None:
    """Its signature verifies (the refusal is about the body, which is parsed only after), and
    with another key the same note is refused for its signature."""
    name, key = parse_verifier_key(vector["vkey"])
    assert verifier_key(name, key) == vector["vkey"]
    with pytest.raises(BadCheckpoint) as refused:
        open_checkpoint(vector["note"].encode(), name, {name: key})
    assert str(refused.value) == (
        "checkpoint: the body has 1 line(s), not the 3 of origin, tree size and root hash"
    )
    with pytest.raises(BadCheckpoint, match="no signature by a pinned key verifies"):
        open_checkpoint(vector["note"].encode(), name, {name: OTHER.public})


# Key IDs and verifier keys.


def test_ed25519_key_id_is_the_spec_formula() -> None:
    raw = ED.public.spki_der[-32:]
    want = hashlib.sha256(NAME.encode() + b"\n\x01" + raw).digest()[:4]
    assert key_hash(NAME, ED.public) == want
    encoded = base64.b64encode(b"\x01" + raw).decode()
    assert verifier_key(NAME, ED.public) == f"{NAME}+{want.hex()}+{encoded}"


def test_p256_key_id_is_that_of_transparency_dev_witness_type_2() -> None:
    """signed-note type 0x02: SHA-256 of the SubjectPublicKeyInfo, whatever the key name."""
    want = hashlib.sha256(P256.public.spki_der).digest()[:4]
    assert key_hash(NAME, P256.public) == key_hash("any.other/name", P256.public) == want
    assert verifier_key(NAME, P256.public).endswith(
        "+" + base64.b64encode(b"\x02" + P256.public.spki_der).decode()
    )


def test_p384_key_id_uses_the_reserved_0xff_type_with_an_identifier() -> None:
    assert P384_SIGNATURE_TYPE == b"\xffinvsync/ecdsa-p384-sha384"
    want = hashlib.sha256(
        NAME.encode() + b"\n" + P384_SIGNATURE_TYPE + P384.public.spki_der
    ).digest()[:4]
    assert key_hash(NAME, P384.public) == want
    assert parse_verifier_key(verifier_key(NAME, P384.public)) == (NAME, P384.public)


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        ("no-plus-signs", "not <name>+<8 hex digits>+<base64 key>"),
        ("a b+01020304+AQ==", "not <name>+<8 hex digits>+<base64 key>"),
        ("name+0102030+AQ==", "not <name>+<8 hex digits>+<base64 key>"),
        ("name+01020304+AQ", "the key is not canonical base64"),
        ("name+01020304+" + base64.b64encode(b"\x01" + bytes(31)).decode(), "not an Ed25519"),
        ("name+01020304+" + base64.b64encode(b"\x04" + bytes(32)).decode(), "not an Ed25519"),
        ("name+00000000+" + verifier_key("name", ED.public).split("+", 2)[2], "key ID 00000000"),
        (
            "name+01020304+" + base64.b64encode(b"\x02" + P384.public.spki_der).decode(),
            "the key type does not match the key",
        ),
    ],
    ids=[
        "no-parts",
        "space-in-name",
        "short-id",
        "bad-base64",
        "short-ed25519",
        "type-4",
        "wrong-id",
        "p384-as-type-2",
    ],
)
def test_a_malformed_verifier_key_is_refused(vkey: str, message: str) -> None:
    with pytest.raises(KeyLoadError, match=re.escape(message)):
        parse_verifier_key(vkey)


# Signing and opening.


@pytest.mark.parametrize("key", [ED, P256, P384], ids=["ed25519", "ecdsa-p256", "ecdsa-p384"])
def test_a_signed_checkpoint_opens_with_the_pinned_key(key: SigningKey) -> None:
    data = sign_checkpoint(CHECKPOINT, NAME, key)
    assert data.startswith(f"{ORIGIN}\n42\n{ROOT_B64}\n\n\u2014 {NAME} ".encode())
    signatures = data.decode().split("\n\n")[1]
    assert re.fullmatch(rf"\u2014 {re.escape(NAME)} [A-Za-z0-9+/]+=*\n", signatures)
    assert open_checkpoint(data, ORIGIN, {NAME: key.public}) == CHECKPOINT


def test_the_empty_tree_and_the_largest_size_round_trip() -> None:
    for size in (0, MAX_TREE_SIZE):
        checkpoint = Checkpoint(ORIGIN, size, ROOT)
        assert open_checkpoint(sign_checkpoint(checkpoint, NAME, ED), ORIGIN, KEYS) == checkpoint


def test_extension_lines_are_signed_and_ignored() -> None:
    body = f"{ORIGIN}\n42\n{ROOT_B64}\nTimestamp: 1\nanything else at all\n"
    assert open_checkpoint(signed(body), ORIGIN, KEYS) == CHECKPOINT


def test_unknown_signatures_are_ignored() -> None:
    body = CHECKPOINT.body().decode()
    data = note(
        body,
        line("witness.example", OTHER, body.encode()),  # a name not pinned
        line(NAME, OTHER, body.encode()),  # the pinned name, another key: another key ID
        line(NAME, ED, body.encode()),
        line(NAME, ED, body.encode()),  # twice is fine
    )
    assert open_checkpoint(data, ORIGIN, KEYS) == CHECKPOINT


def test_a_note_of_only_unknown_signatures_is_refused() -> None:
    body = CHECKPOINT.body().decode()
    data = note(body, line("witness.example", ED, body.encode()), line(NAME, OTHER, body.encode()))
    with pytest.raises(BadCheckpoint) as refused:
        open_checkpoint(data, ORIGIN, KEYS)
    assert str(refused.value) == f"checkpoint of {ORIGIN}: no signature by a pinned key verifies"


def test_a_failing_signature_by_a_pinned_key_rejects_the_note_even_beside_a_good_one() -> None:
    body = CHECKPOINT.body().decode()
    forged = line(NAME, OTHER, body.encode(), key_id=key_hash(NAME, ED.public))
    for lines in ((line(NAME, ED, body.encode()), forged), (forged, line(NAME, ED, body.encode()))):
        with pytest.raises(BadCheckpoint) as refused:
            open_checkpoint(note(body, *lines), ORIGIN, KEYS)
        assert (
            str(refused.value) == f"checkpoint: the signature by pinned key {NAME} does not verify"
        )


def test_a_second_pinned_key_must_verify_too() -> None:
    body = CHECKPOINT.body().decode()
    keys = {NAME: ED.public, "witness.example": P256.public}
    good = note(body, line(NAME, ED, body.encode()), line("witness.example", P256, body.encode()))
    assert open_checkpoint(good, ORIGIN, keys) == CHECKPOINT
    bad = note(
        body,
        line(NAME, ED, body.encode()),
        line("witness.example", P256, b"another body"),
    )
    with pytest.raises(
        BadCheckpoint, match=re.escape("signature by pinned key witness.example does not")
    ):
        open_checkpoint(bad, ORIGIN, keys)


def test_up_to_the_signature_limit_is_accepted() -> None:
    body = CHECKPOINT.body().decode()
    others = [line(f"witness{i}.example", OTHER, body.encode()) for i in range(MAX_SIGNATURES - 1)]
    assert MAX_SIGNATURES == 16  # signed-note: verifiers MUST accept at least 16
    assert open_checkpoint(note(body, *others, line(NAME, ED, body.encode())), ORIGIN, KEYS)


def test_bad_checkpoint_is_a_signature_error() -> None:
    assert issubclass(BadCheckpoint, SignatureError)


BODY = CHECKPOINT.body().decode()
GOOD = signed(BODY)
SIGNATURE_LINE = GOOD.decode().split("\n\n")[1]


def _with_body(body: str) -> bytes:
    return signed(body)


REFUSALS: list[tuple[str, bytes, str]] = [
    (
        "over-the-size-limit",
        GOOD[:-1] + b"A" * (MAX_NOTE_BYTES - len(GOOD) + 1) + b"\n",
        f"checkpoint: the note is {MAX_NOTE_BYTES + 1} bytes, over the limit of {MAX_NOTE_BYTES}",
    ),
    ("not-utf-8", b"\xff" + GOOD, "checkpoint: the note is not UTF-8"),
    ("utf-8-surrogate", b"\xed\xa0\x80" + GOOD, "checkpoint: the note is not UTF-8"),
    (
        "carriage-return",
        GOOD.replace(b"\n", b"\r\n"),
        "checkpoint: the note contains the control character U+000D",
    ),
    ("tab", b"\t" + GOOD, "checkpoint: the note contains the control character U+0009"),
    ("nul", GOOD + b"\x00", "checkpoint: the note contains the control character U+0000"),
    (
        "no-blank-line",
        GOOD.replace(b"\n\n", b"\n"),
        "checkpoint: not a signed note (no blank line after the body)",
    ),
    ("body-only", BODY.encode() + b"\n", "checkpoint: the note has no signature lines"),
    ("trailing-blank-line", GOOD + b"\n", "checkpoint: the note has no signature lines"),
    (
        "no-final-newline",
        GOOD[:-1],
        "checkpoint: the last signature line does not end in a newline",
    ),
    (
        "too-many-signatures",
        note(BODY, *[SIGNATURE_LINE] * (MAX_SIGNATURES + 1)),
        f"checkpoint: {MAX_SIGNATURES + 1} signature lines, over the limit of {MAX_SIGNATURES}",
    ),
    (
        "hyphen-not-em-dash",
        note(BODY, "-" + SIGNATURE_LINE[1:]),
        "checkpoint: signature line 1 does not start with an em dash and a space",
    ),
    (
        "stray-second-line",
        note(BODY, SIGNATURE_LINE, "trailing text\n"),
        "checkpoint: signature line 2 does not start with an em dash and a space",
    ),
    (
        "plus-in-key-name",
        note(BODY, SIGNATURE_LINE.replace(NAME, NAME + "+x")),
        "checkpoint: signature line 1 has no valid key name",
    ),
    (
        "no-key-name",
        note(BODY, "\u2014  " + SIGNATURE_LINE.split(" ", 2)[2]),
        "checkpoint: signature line 1 has no valid key name",
    ),
    (
        "no-signature",
        note(BODY, f"\u2014 {NAME}\n"),
        "checkpoint: signature line 1 is not base64 of a key ID and a signature",
    ),
    (
        "short-signature",
        note(BODY, f"\u2014 {NAME} AQIDBA==\n"),
        "checkpoint: signature line 1 is not base64 of a key ID and a signature",
    ),
    (
        "unpadded-signature",
        note(BODY, SIGNATURE_LINE.replace("=", "")),
        "checkpoint: signature line 1 is not base64 of a key ID and a signature",
    ),
    (
        "two-spaces",
        note(BODY, SIGNATURE_LINE.replace(f"{NAME} ", f"{NAME}  ")),
        "checkpoint: signature line 1 is not base64 of a key ID and a signature",
    ),
    (
        "two-body-lines",
        _with_body(f"{ORIGIN}\n42\n"),
        "checkpoint: the body has 2 line(s), not the 3 of origin, tree size and root hash",
    ),
    ("empty-origin", _with_body(f"\n42\n{ROOT_B64}\n"), "checkpoint: line 1 of the body is empty"),
    (
        "empty-extension-line",
        _with_body(f"{ORIGIN}\n42\n{ROOT_B64}\n\nextension\n"),
        "checkpoint: line 4 of the body is empty",
    ),
    *[
        (
            f"size-{label}",
            _with_body(f"{ORIGIN}\n{size}\n{ROOT_B64}\n"),
            f"checkpoint: tree size {size!r} is not a decimal number without sign or leading zeros",
        )
        for label, size in [
            ("plus", "+42"),
            ("minus", "-42"),
            ("leading-zero", "042"),
            ("zeros", "00"),
            ("arabic-indic-digits", "\u0664\u0662"),
            ("space", " 42"),
            ("underscore", "4_2"),
            ("exponent", "4e2"),
            ("hex", "0x2a"),
        ]
    ],
    (
        "size-over-2^64",
        _with_body(f"{ORIGIN}\n{2**64}\n{ROOT_B64}\n"),
        f"checkpoint: tree size {2**64} is over 2^64 - 1",
    ),
    (
        "size-21-digits",
        _with_body(f"{ORIGIN}\n{10**20}\n{ROOT_B64}\n"),
        f"checkpoint: tree size {10**20} is over 2^64 - 1",
    ),
    (
        "size-5000-digits",
        _with_body(f"{ORIGIN}\n{'9' * 5000}\n{ROOT_B64}\n"),
        f"checkpoint: tree size {'9' * 24}... is over 2^64 - 1",
    ),
    *[
        (
            f"root-{label}",
            _with_body(f"{ORIGIN}\n42\n{root}\n"),
            "checkpoint: the root hash is not base64 of 32 bytes",
        )
        for label, root in [
            ("31-bytes", base64.b64encode(bytes(31)).decode()),
            ("33-bytes", base64.b64encode(bytes(33)).decode()),
            ("unpadded", ROOT_B64.rstrip("=")),
            ("url-safe", base64.urlsafe_b64encode(b"\xff" * 32).decode()),
            ("stray-bits", ROOT_B64[:42] + B64[B64.index(ROOT_B64[42]) ^ 1] + "="),
            ("hex", ROOT.hex()),
        ]
    ],
    (
        "other-origin",
        _with_body(f"elsewhere.example/log\n42\n{ROOT_B64}\n"),
        f"checkpoint names origin 'elsewhere.example/log', not {ORIGIN!r}",
    ),
]


@pytest.mark.parametrize(
    ("data", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_a_malformed_note_is_refused_naming_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(BadCheckpoint) as refused:
        open_checkpoint(data, ORIGIN, KEYS)
    assert str(refused.value) == message


def test_the_size_limit_admits_a_note_of_exactly_the_limit() -> None:
    extension = "x" * 100
    body = f"{ORIGIN}\n42\n{ROOT_B64}\n{extension}\n"
    fill = MAX_NOTE_BYTES - len(signed(body))
    body = f"{ORIGIN}\n42\n{ROOT_B64}\n{extension + 'x' * fill}\n"
    assert len(signed(body)) == MAX_NOTE_BYTES
    assert open_checkpoint(signed(body), ORIGIN, KEYS) == CHECKPOINT


@pytest.mark.parametrize(
    ("checkpoint", "name", "message"),
    [
        (CHECKPOINT, "a name", "'a name' is not a signed-note key name"),
        (CHECKPOINT, "a+b", "'a+b' is not a signed-note key name"),
        (CHECKPOINT, "", "'' is not a signed-note key name"),
        (CHECKPOINT, "a\x7fb\x01", "is not a signed-note key name"),
        (CHECKPOINT, "\ud800", "is not a signed-note key name"),
        (Checkpoint("", 1, ROOT), NAME, "'' is not a one-line origin"),
        (Checkpoint("a\nb", 1, ROOT), NAME, "'a\\nb' is not a one-line origin"),
        (Checkpoint("a\tb", 1, ROOT), NAME, "is not a one-line origin"),
        (Checkpoint(ORIGIN, -1, ROOT), NAME, "tree size -1 is out of range"),
        (Checkpoint(ORIGIN, 2**64, ROOT), NAME, f"tree size {2**64} is out of range"),
        (Checkpoint(ORIGIN, 1, ROOT[:31]), NAME, "the root hash is 31 bytes, not 32"),
        (Checkpoint("o" * MAX_NOTE_BYTES, 1, ROOT), NAME, f"would be over {MAX_NOTE_BYTES} bytes"),
    ],
    ids=[
        "space",
        "plus",
        "empty-name",
        "control",
        "surrogate",
        "empty-origin",
        "newline-origin",
        "tab-origin",
        "negative",
        "too-big",
        "short-root",
        "too-long",
    ],
)
def test_signing_refuses_what_would_not_be_a_valid_note(
    checkpoint: Checkpoint, name: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        sign_checkpoint(checkpoint, name, ED)


# Hypothesis.


@FUZZ
@given(data=st.binary(max_size=MAX_NOTE_BYTES + 64))
def test_arbitrary_bytes_only_ever_raise_bad_checkpoint(data: bytes) -> None:
    with pytest.raises(BadCheckpoint):
        open_checkpoint(data, ORIGIN, KEYS)


PIECES = [
    *["\u2014", " ", "\n", "+", "=", "/", "0", "1", "9", "A", "Q", "z", "-", "\t", "\u00a0"],
    *[NAME, ROOT_B64, SIGNATURE_LINE, "\n\n", "42", "\ud7ff", "\U0001f600"],
]
NOTE_TEXT = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)


@FUZZ
@given(text=NOTE_TEXT)
def test_note_shaped_text_only_ever_raises_bad_checkpoint(text: str) -> None:
    try:
        open_checkpoint(text.encode(), ORIGIN, KEYS)
    except BadCheckpoint:
        return
    assert text.encode() == GOOD  # it can be put together from the alphabet's pieces


@FUZZ
@given(
    head=NOTE_TEXT,
    body=st.lists(st.text(max_size=30), min_size=1, max_size=6).map("\n".join),
)
def test_any_body_signed_by_the_pinned_key_opens_or_raises_bad_checkpoint(
    head: str, body: str
) -> None:
    """The signature verifies here, so what is tested is the body's parser."""
    text = head + body + "\n"
    try:
        data = signed(text)
    except UnicodeEncodeError:  # a lone surrogate: no bytes to sign
        return
    try:
        opened = open_checkpoint(data, ORIGIN, KEYS)
    except BadCheckpoint:
        return
    lines = text.split("\n")
    assert opened.origin == lines[0] == ORIGIN
    assert str(opened.size) == lines[1]
    assert base64.b64encode(opened.root).decode() == lines[2]


MUTATED = {
    kind: sign_checkpoint(CHECKPOINT, NAME, key)
    for kind, key in (("ed25519", ED), ("ecdsa-p256", P256), ("ecdsa-p384", P384))
}
PINNED = {"ed25519": ED.public, "ecdsa-p256": P256.public, "ecdsa-p384": P384.public}


@pytest.mark.parametrize("kind", sorted(MUTATED))
def test_every_single_byte_change_to_a_signed_note_is_refused(kind: str) -> None:
    data = MUTATED[kind]
    for position in range(len(data)):
        for mask in (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF):
            changed = bytearray(data)
            changed[position] ^= mask
            with pytest.raises(BadCheckpoint):
                open_checkpoint(bytes(changed), ORIGIN, {NAME: PINNED[kind]})


@FUZZ
@given(
    kind=st.sampled_from(sorted(MUTATED)),
    position=st.integers(0, 1 << 16),
    mask=st.integers(1, 255),
)
def test_a_random_byte_change_to_a_signed_note_is_refused(
    kind: str, position: int, mask: int
) -> None:
    changed = bytearray(MUTATED[kind])
    changed[position % len(changed)] ^= mask
    with pytest.raises(BadCheckpoint):
        open_checkpoint(bytes(changed), ORIGIN, {NAME: PINNED[kind]})


@FUZZ
@given(
    kind=st.sampled_from(sorted(MUTATED)),
    start=st.integers(0, 1 << 16),
    length=st.integers(1, 8),
    insert=st.binary(max_size=8),
)
def test_a_cut_or_insertion_in_a_signed_note_is_refused(
    kind: str, start: int, length: int, insert: bytes
) -> None:
    data = MUTATED[kind]
    at = start % len(data)
    changed = data[:at] + insert + data[at + length :]
    if changed == data:
        return
    with pytest.raises(BadCheckpoint):
        open_checkpoint(changed, ORIGIN, {NAME: PINNED[kind]})


@FUZZ
@given(
    origin=st.text(
        alphabet=st.characters(exclude_categories=["Cs", "Cc"]),  # no surrogates or controls
        min_size=1,
        max_size=60,
    ),
    size=st.integers(0, MAX_TREE_SIZE),
    root=st.binary(min_size=32, max_size=32),
)
def test_any_valid_checkpoint_round_trips(origin: str, size: int, root: bytes) -> None:
    checkpoint = Checkpoint(origin, size, root)
    assert open_checkpoint(sign_checkpoint(checkpoint, NAME, ED), origin, KEYS) == checkpoint
