"""The report body (determinism, schema), comparing findings, signatures and report files."""

from __future__ import annotations

import ast
import json
import random
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from invsync.agent.errors import ReportError, SignatureError
from invsync.agent.exchange import envelope
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.keys import SigningKey, generate
from invsync.agent.model.findings import Finding, Severity
from invsync.agent.model.record import CertRecord, parse_certificate
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile.runner import reconcile
from invsync.agent.report.body import (
    REPORT_PAYLOAD_TYPE,
    Pins,
    ReportBody,
    Signer,
    SignerStatus,
    SnapshotRef,
    build_report_body,
    compare_findings,
    parse_report_body,
    read_report_file,
    report_id,
    verify_report,
    write_report_file,
)
from tests.paths import DEMO

AS_OF = datetime(2021, 1, 1, tzinfo=UTC)
OV_BUG = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
ROOT_REF = SnapshotRef("secom", "root", 3, "a" * 64)
SUB_REF = SnapshotRef("jprs", "subordinate", 7, "b" * 64)


def _records(path: Path, operator: str | None) -> list[CertRecord]:
    if path.suffix == ".jsonl":
        pems = [json.loads(line)["certificate"] for line in path.read_text().splitlines()]
        certs = [x509.load_pem_x509_certificate(pem.encode()) for pem in pems]
    else:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    infos = [parse_certificate(cert.public_bytes(Encoding.DER)) for cert in certs]
    return [CertRecord(info, operator=operator) for info in infos]


# As a first report lists them: each first seen at its as_of.
FINDINGS = tuple(
    replace(finding, first_seen=AS_OF)
    for finding in reconcile(
        Side("secom", _records(DEMO / "secom_issuance_log.jsonl", "jprs")),
        Side("jprs", _records(DEMO / "jprs_ca_certificates.pem", None)),
        AS_OF,
    )
)
KEYS = {"server": generate(), "secom": generate("ecdsa-p256"), "jprs": generate()}
ROLES = {"server": "server", "secom": "root", "jprs": "subordinate"}


def _signers(keys: dict[str, SigningKey] = KEYS) -> list[Signer]:
    return [Signer(ROLES[name], name, key.keyid, key.public.spki_der) for name, key in keys.items()]


def _body(**changes: object) -> bytes:
    args: dict[str, object] = {
        "pairing": "secom-jprs",
        "as_of": AS_OF,
        "root": ROOT_REF,
        "subordinate": SUB_REF,
        "findings": FINDINGS,
        "signers": _signers(),
    }
    args.update(changes)
    return build_report_body(**args)  # type: ignore[arg-type]


def _signed(body: bytes, *names: str) -> Envelope:
    return envelope.sign(REPORT_PAYLOAD_TYPE, body, [KEYS[name] for name in names])


# --- the body ---------------------------------------------------------------------------------


def test_same_inputs_give_byte_identical_bodies() -> None:
    assert _body() == _body()
    assert report_id(_body()) == report_id(_body())


def test_input_order_does_not_change_the_body() -> None:
    shuffler = random.Random(1695993)
    findings, signers = list(FINDINGS), _signers()
    for _ in range(5):
        shuffler.shuffle(findings)
        shuffler.shuffle(signers)
        assert _body(findings=findings, signers=signers) == _body()


def test_body_is_canonical_json_of_the_schema() -> None:
    body = _body()
    obj = json.loads(body)
    assert body == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    assert obj["schema"] == "invsync.report.v1"
    assert obj["as_of"] == "2021-01-01T00:00:00Z"
    assert obj["root"] == {"party": "secom", "role": "root", "version": 3, "digest": "a" * 64}
    assert obj["summary"] == {"error": 2, "warning": 2, "notice": 0}
    assert [(f["code"], f["sha256"][:8]) for f in obj["findings"]] == [
        ("doppelganger-untracked", "21C06633"),
        ("doppelganger-untracked", "659B7A51"),
        ("missing-at-subordinate", "21C06633"),
        ("missing-at-subordinate", "659B7A51"),
    ]
    assert [s["role"] for s in obj["signers"]] == ["server", "root", "subordinate"]


def test_non_ascii_stays_utf8() -> None:
    finding = replace(FINDINGS[0], subject="O=株式会社日本レジストリサービス")
    assert "株式会社".encode() in _body(findings=[finding])


def test_a_signer_role_is_one_of_three() -> None:
    with pytest.raises(ValueError, match="signer role 'auditor' is not one of server, root"):
        Signer("auditor", "kpmg", "", b"")


def test_report_id_is_lowercase_sha256_hex() -> None:
    rid = report_id(b"{}")
    assert rid == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def test_parse_round_trips_to_the_same_bytes() -> None:
    parsed = parse_report_body(_body())
    assert parsed.findings == FINDINGS
    assert (parsed.pairing, parsed.as_of, parsed.root, parsed.subordinate) == (
        "secom-jprs",
        AS_OF,
        ROOT_REF,
        SUB_REF,
    )
    rebuilt = _body(findings=parsed.findings, signers=parsed.signers)
    assert rebuilt == _body()


def test_the_same_bytes_parse_to_one_shared_read_only_body() -> None:
    """A cycle reads one body several times: parsed once, by its id; a body of other bytes,
    or one that does not parse, is read afresh each time."""
    body = _body()
    first = parse_report_body(body)
    assert parse_report_body(bytes(body)) is first
    other = _body(as_of=AS_OF + timedelta(seconds=1))
    assert parse_report_body(other) is not first and parse_report_body(other).as_of != AS_OF
    with pytest.raises(TypeError):
        first.summary["error"] = 0  # type: ignore[index]
    for _ in range(2):
        with pytest.raises(ReportError, match="missing"):
            parse_report_body(_mutated({"pairing": None}))


def _mutated(change: dict[str, object]) -> bytes:
    obj = json.loads(_body())
    for key, value in change.items():
        if value is None:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pairing": None}, r"report body: missing \['pairing'\], unexpected \[\]"),
        ({"colour": "red"}, r"report body: missing \[\], unexpected \['colour'\]"),
        ({"schema": "invsync.report.v2"}, "field 'schema' is 'invsync.report.v2'"),
        ({"as_of": "2021-01-01"}, "field 'as_of': '2021-01-01' is not an RFC 3339 UTC time"),
        ({"root": {"party": "x", "role": "subordinate", "version": 1, "digest": ""}},
         "root.role is 'subordinate', expected 'root'"),
        ({"summary": {"error": 0, "warning": 0, "notice": 0}}, "'summary' does not match"),
        ({"findings": [{"code": "x"}]}, r"findings\[0\]: expected an object with keys"),
        ({"signers": [{"role": "auditor", "name": "x", "keyid": "", "public_key": ""}]},
         r"signers\[0\]: role 'auditor' is not one of server, root, subordinate"),
    ],
)  # fmt: skip
def test_parse_names_the_bad_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(ReportError, match=message):
        parse_report_body(_mutated(change))


def test_parse_refuses_what_is_not_json() -> None:
    with pytest.raises(ReportError, match="report body: not valid UTF-8 JSON"):
        parse_report_body(b"\xff{")
    with pytest.raises(ReportError, match="report body: expected a JSON object"):
        parse_report_body(b"[]")


# --- comparing findings -----------------------------------------------------------------------


def test_compare_agreeing_findings_is_empty() -> None:
    assert compare_findings(_body(), FINDINGS) == []
    assert compare_findings(parse_report_body(_body()), list(reversed(FINDINGS))) == []


def test_compare_names_findings_only_one_side_has() -> None:
    server = [f for f in FINDINGS if f.code == "missing-at-subordinate"]
    mine = [f for f in FINDINGS if not (f.code == "missing-at-subordinate" and f.sha256 == OV_BUG)]
    assert compare_findings(server, mine) == [
        f"I find doppelganger-untracked {FINDINGS[0].sha256} that server does not list",
        f"I find doppelganger-untracked {FINDINGS[1].sha256} that server does not list",
        f"server lists missing-at-subordinate {OV_BUG} that I do not",
    ]


def test_compare_names_the_fields_that_differ() -> None:
    (theirs,) = [f for f in FINDINGS if f.code == "missing-at-subordinate" and f.sha256 == OV_BUG]
    downgraded = replace(theirs, severity=Severity.NOTICE, party="secom")
    assert compare_findings([downgraded], [theirs], theirs="secom") == [
        f"secom and I differ on missing-at-subordinate {OV_BUG}: "
        "severity 'notice' vs mine 'error', party 'secom' vs mine 'jprs'"
    ]


# --- signatures -------------------------------------------------------------------------------


def test_verify_a_report_signed_by_all_three() -> None:
    result = verify_report(_signed(_body(), "server", "secom", "jprs"))
    assert result.roles == {
        "server": SignerStatus.VALID,
        "root": SignerStatus.VALID,
        "subordinate": SignerStatus.VALID,
    }
    assert result.complete
    assert result.report_id == report_id(_body())
    assert isinstance(result.body, ReportBody)
    result.raise_unless_complete()
    assert result.describe().endswith("complete: server valid, root valid, subordinate valid")


def test_a_tampered_body_invalidates_every_signature() -> None:
    env = _signed(_body(), "server", "secom", "jprs")
    tampered = env.payload.replace(b'"severity":"error"', b'"severity":"notice"')
    tampered = tampered.replace(b'"error":2,', b'"error":0,').replace(b'"notice":0', b'"notice":2')
    assert tampered != env.payload and b'"notice":2' in tampered
    result = verify_report(replace(env, payload=tampered))
    assert set(result.roles.values()) == {SignerStatus.INVALID}
    assert not result.complete


def test_a_missing_signer_is_absent() -> None:
    result = verify_report(_signed(_body(), "server", "secom"))
    assert result.roles["subordinate"] is SignerStatus.ABSENT
    assert not result.complete
    with pytest.raises(SignatureError, match=r"report [0-9a-f]{64}: subordinate absent$"):
        result.raise_unless_complete()


def test_a_signer_with_another_key_than_the_pinned_one_is_untrusted() -> None:
    impostor = {**KEYS, "secom": generate()}
    body = _body(signers=_signers(impostor))
    env = envelope.sign(REPORT_PAYLOAD_TYPE, body, list(impostor.values()))
    pinned = {name: key.keyid for name, key in KEYS.items()}
    result = verify_report(env, pinned)
    assert result.roles == {
        "server": SignerStatus.VALID,
        "root": SignerStatus.UNTRUSTED,
        "subordinate": SignerStatus.VALID,
    }
    (check,) = [c for c in result.checks if c.signer.name == "secom"]
    assert check.detail == f"pinned key is {KEYS['secom'].keyid}"
    assert verify_report(env).complete  # without pins it is only self-consistent


def test_an_unpinned_name_is_unverified_never_valid_when_pins_are_given() -> None:
    env = _signed(_body(), "server", "secom", "jprs")
    result = verify_report(env, {"server": KEYS["server"].keyid, "secom": KEYS["secom"].keyid})
    assert result.roles["subordinate"] is SignerStatus.UNVERIFIED
    (check,) = [c for c in result.checks if c.signer.name == "jprs"]
    assert check.detail == "no key pinned for jprs"
    assert not result.complete
    assert result.describe().endswith(
        "INCOMPLETE: server valid, root valid, subordinate unverified"
    )
    with pytest.raises(SignatureError, match=r"report [0-9a-f]{64}: subordinate unverified$"):
        result.raise_unless_complete()


def test_no_pins_at_all_leave_every_signer_unverified() -> None:
    result = verify_report(_signed(_body(), "server", "secom", "jprs"), Pins())
    assert set(result.roles.values()) == {SignerStatus.UNVERIFIED}
    assert not result.complete


def test_an_unpinned_signer_without_a_signature_is_absent_and_a_bad_one_invalid() -> None:
    env = _signed(_body(), "server", "secom")
    env = replace(env, signatures=(*env.signatures, Sig(KEYS["jprs"].keyid, b"\x00" * 64)))
    assert verify_report(env, Pins()).roles["subordinate"] is SignerStatus.INVALID
    assert verify_report(_signed(_body(), "server"), Pins()).roles["root"] is SignerStatus.ABSENT


def test_role_pins_bind_the_server_role_and_the_party_roles() -> None:
    # An agent does not know the server's name: it pins the server's keys for the server role.
    env = _signed(_body(), "server", "secom", "jprs")
    parties = {name: frozenset([KEYS[name].keyid]) for name in ("secom", "jprs")}
    pins = Pins(server=frozenset([KEYS["server"].keyid]), parties=parties)
    assert verify_report(env, pins).complete
    # A party's key pinned for the party roles is not the server's.
    mixed = Pins(server=frozenset([KEYS["secom"].keyid]), parties=parties)
    result = verify_report(env, mixed)
    assert result.roles["server"] is SignerStatus.UNTRUSTED
    (check,) = [c for c in result.checks if c.signer.role == "server"]
    assert check.detail == f"pinned key is {KEYS['secom'].keyid}"


def test_a_party_listed_as_the_server_too_is_invalid_in_both_roles() -> None:
    # Else, with every name pinned, a body listing secom's key as the "server" would pass as
    # complete without the exchange server ever signing it.
    keys = {"server": KEYS["secom"], "secom": KEYS["secom"], "jprs": KEYS["jprs"]}
    signers = [Signer(ROLES[n], "secom" if n == "server" else n, k.keyid, k.public.spki_der)
               for n, k in keys.items()]  # fmt: skip
    env = envelope.sign(REPORT_PAYLOAD_TYPE, _body(signers=signers), [KEYS["secom"], KEYS["jprs"]])
    result = verify_report(env, {"secom": KEYS["secom"].keyid, "jprs": KEYS["jprs"].keyid})
    assert result.roles == {
        "server": SignerStatus.INVALID,
        "root": SignerStatus.INVALID,
        "subordinate": SignerStatus.VALID,
    }
    assert "secom is listed as server and root: one name, one role" in result.describe()


def test_one_name_may_be_pinned_to_several_keys_and_pins_merge() -> None:
    env = _signed(_body(), "server", "secom", "jprs")
    other = generate().keyid
    names = {n: frozenset([k.keyid, other]) for n, k in KEYS.items() if n != "jprs"}
    merged = Pins(names=names).merged(Pins.of({"jprs": KEYS["jprs"].keyid}))
    assert verify_report(env, merged).complete
    result = verify_report(env, Pins(names={**names, "jprs": frozenset([other, "f" * 64])}))
    (check,) = [c for c in result.checks if c.signer.name == "jprs"]
    assert (check.status, check.detail) == (
        SignerStatus.UNTRUSTED,
        f"pinned keys are {', '.join(sorted([other, 'f' * 64]))}",
    )


def test_a_valid_role_with_an_untrusted_second_key_is_not_complete() -> None:
    second = generate()
    signers = [*_signers(), Signer("subordinate", "jprs", second.keyid, second.public.spki_der)]
    body = _body(signers=signers)
    env = envelope.sign(REPORT_PAYLOAD_TYPE, body, [*KEYS.values(), second])
    result = verify_report(env, {name: key.keyid for name, key in KEYS.items()})
    assert result.roles["subordinate"] is SignerStatus.VALID  # its best signer
    assert not result.complete
    with pytest.raises(SignatureError, match=r": subordinate jprs untrusted$"):
        result.raise_unless_complete()


def test_a_keyid_that_is_not_the_listed_keys_is_invalid() -> None:
    # A body must not pair a pinned keyid with some other key.
    lying = [replace(s, public_key=generate().public.spki_der) if s.name == "jprs" else s
             for s in _signers()]  # fmt: skip
    result = verify_report(_signed(_body(signers=lying), "server", "secom", "jprs"))
    assert result.roles["subordinate"] is SignerStatus.INVALID
    assert "keyid is not that of the listed key" in result.describe()


def test_signatures_by_unlisted_keys_are_reported() -> None:
    stranger = generate()
    env = _signed(_body(), "server", "secom", "jprs")
    env = envelope.add_signature(env, stranger)
    result = verify_report(env)
    assert result.complete
    assert result.unknown_keyids == (stranger.keyid,)


def test_a_bad_signature_is_invalid() -> None:
    env = _signed(_body(), "server", "secom")
    env = replace(env, signatures=(*env.signatures, Sig(KEYS["jprs"].keyid, b"\x00" * 64)))
    assert verify_report(env).roles["subordinate"] is SignerStatus.INVALID


def test_every_reader_in_invsync_passes_pins() -> None:
    # verify_report without pins only checks a body against the keys it lists about itself:
    # that is for tests; no command, daemon or page of invsync may call it so.
    root = Path(__file__).resolve().parent.parent
    unpinned = [
        f"{path.relative_to(root)}:{call.lineno}"
        for path in sorted([*(root / "agent").rglob("*.py"), *(root / "server").rglob("*.py")])
        for call in ast.walk(ast.parse(path.read_text()))
        if isinstance(call, ast.Call)
        and getattr(call.func, "id", getattr(call.func, "attr", None)) == "verify_report"
        and len(call.args) + len(call.keywords) < 2
    ]
    assert unpinned == []


def test_another_payload_type_is_not_a_report() -> None:
    env = envelope.sign("application/vnd.invsync.snapshot.v1+protobuf", _body(), [KEYS["server"]])
    with pytest.raises(ReportError, match=r"payload type .*snapshot.* is not .*report"):
        verify_report(env)


# --- report files -----------------------------------------------------------------------------


def test_write_and_read_a_report_file(tmp_path: Path) -> None:
    env = _signed(_body(), "server", "secom", "jprs")
    path = tmp_path / "secom-jprs.report.json"
    write_report_file(path, env)
    assert read_report_file(path) == env
    assert set(json.loads(path.read_text())) == {"payloadType", "payload", "signatures"}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_write_replaces_an_existing_report(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_report_file(path, _signed(_body(), "server"))
    write_report_file(path, _signed(_body(), "server", "jprs"))
    assert len(read_report_file(path).signatures) == 2


def test_read_names_the_path_of_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"payloadType": ')
    with pytest.raises(ReportError, match=re.escape(f"report file {path}: not valid UTF-8 JSON")):
        read_report_file(path)
    path.write_text('{"payloadType": "x", "payload": "!!", "signatures": []}')
    bad_base64 = re.escape(f"report file {path}: payload: not valid base64")
    with pytest.raises(ReportError, match=bad_base64):
        read_report_file(path)
    missing = tmp_path / "none.json"
    with pytest.raises(ReportError, match=re.escape(f"report file {missing}: cannot read")):
        read_report_file(missing)


def test_findings_in_a_report_are_findings() -> None:
    assert all(isinstance(f, Finding) for f in parse_report_body(_body()).findings)
