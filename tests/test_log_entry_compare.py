"""The canonical form of a logged envelope (agent.exchange.log_entry), made and compared in
parts. `canonical_envelope` is the sorted, compact DSSE JSON, made from its parts so that the
payload is encoded once; a logged envelope is what an agent pushed exactly when it is
`canonical_envelope` of it, byte for byte, and `holds_canonical` compares without making that
form (820 MB for a full snapshot at 1,000,000 certificates). These tests hold each to its
definition over generated envelopes, slice sizes and edits."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.log_entry import canonical_envelope, holds_canonical

_TEXT = st.text(max_size=12)  # any code point: JSON escapes some, and \\u-encodes the rest
_SIGS = st.lists(st.builds(Sig, _TEXT, st.binary(max_size=70)), max_size=3).map(tuple)
ENVELOPES = st.builds(Envelope, _TEXT, st.binary(max_size=200), _SIGS)
STEPS = st.sampled_from([3, 6, 9, 30, 3 << 20])


@given(ENVELOPES)
def test_the_canonical_form_is_the_sorted_compact_dsse_json(env: Envelope) -> None:
    text = json.dumps(env.to_json_dict(), sort_keys=True, separators=(",", ":"))
    assert canonical_envelope(env) == text.encode("utf-8")


@given(ENVELOPES, STEPS)
def test_the_canonical_form_is_held(env: Envelope, step: int) -> None:
    assert holds_canonical(canonical_envelope(env), env, step)


@given(ENVELOPES, ENVELOPES, STEPS)
def test_another_envelopes_form_is_held_only_if_the_forms_are_equal(
    env: Envelope, other: Envelope, step: int
) -> None:
    logged = canonical_envelope(other)
    assert holds_canonical(logged, env, step) is (logged == canonical_envelope(env))


@given(ENVELOPES, STEPS, st.data())
def test_any_one_byte_changed_inserted_or_dropped_is_not_held(
    env: Envelope, step: int, data: st.DataObject
) -> None:
    form = canonical_envelope(env)
    at = data.draw(st.integers(0, len(form) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != form[at]))
    changed = form[:at] + bytes([byte]) + form[at + 1 :]
    inserted = form[:at] + bytes([byte]) + form[at:]
    dropped = form[:at] + form[at + 1 :]
    for edited in (changed, inserted, dropped):
        assert not holds_canonical(edited, env, step)


@given(ENVELOPES, st.binary(max_size=400), STEPS)
def test_any_bytes_are_held_only_if_they_are_the_form(
    env: Envelope, logged: bytes, step: int
) -> None:
    assert holds_canonical(logged, env, step) is (logged == canonical_envelope(env))


def test_a_payload_over_many_slices_is_compared_to_its_last_byte() -> None:
    env = Envelope("application/vnd.invsync.snapshot+protobuf", bytes(range(256)) * 41, ())
    form = canonical_envelope(env)
    assert holds_canonical(form, env, step=30)
    # The last payload byte changed: its base64 differs in its last characters alone.
    last = Envelope(env.payload_type, env.payload[:-1] + b"\x00", ())
    assert not holds_canonical(form, last, step=30)


@pytest.mark.parametrize("step", [0, -3, 4, 3 * 1024 + 1])
def test_a_step_that_is_no_positive_multiple_of_3_is_refused(step: int) -> None:
    env = Envelope("t", b"x", ())
    with pytest.raises(ValueError, match=f"^step must be a positive multiple of 3, got {step}$"):
        holds_canonical(canonical_envelope(env), env, step)
