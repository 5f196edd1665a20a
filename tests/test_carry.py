"""A reconciliation carried from the one before equals a reconciliation of everything
(agent.reconcile.carry, issue 13).

The differential test walks random sequences of pairings on the real SECOM/JPRS certificates
(tests/golden_cases.py assembles each record as an inventory would: CCADB disclosures, audit
lists and verified CRL entries attached): at each step some records change, appear or go, a
side pushes (its current snapshot becomes its previous one), a header changes, and the clock
moves, forward or back, across expiry, revocation, disclosure and audit deadlines. Each step's
carried findings must be exactly `reconcile`'s. A record unchanged from one step to the next is
the same object, as the exchange server's decoded snapshots share them. The other tests show
that the carry does carry: otherwise the differential test would hold for a carry that
compares everything every time.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from invsync.agent.model.findings import (
    AUDIT_OVERDUE,
    DISAPPEARED,
    DOPPELGANGER_UNTRACKED,
    MISSING_AT_SUBORDINATE,
    STATUS_MISMATCH,
)
from invsync.agent.model.record import CertRecord, Revocation
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile import carry
from invsync.agent.reconcile.carry import Reconciled, reconcile_carried
from invsync.agent.reconcile.runner import reconcile
from tests import golden_cases as g

Json = dict[str, Any]
CERTS = sorted(g.certificates())
TIMES = (
    "2019-06-01T00:00:00Z", "2020-03-01T00:00:00Z", "2020-12-01T00:00:00Z",
    "2021-01-05T00:00:00Z", "2021-02-20T00:00:00Z", "2022-07-01T00:00:00Z",
    "2024-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "2031-01-01T00:00:00Z",
)  # fmt: skip
REASONS = ("", "keyCompromise", "superseded", "cACompromise", "cessationOfOperation")
AUDITS = {
    "a2019": {"kind": "br", "start": "2019-01-01", "end": "2019-12-31"},
    "a2020": {"kind": "br", "start": "2020-01-01", "end": "2020-12-31"},
    "s2020": {"kind": "standard", "start": "2020-04-01", "end": "2021-03-31"},
}
AUDIT_PERIODS = {name: g._audit(spec) for name, spec in AUDITS.items()}
# Clock steps: none, small, across a 7-day deadline, a 92-day one, a year, and backwards.
STEPS = (0, 1, 24 * 8, 24 * 93, 24 * 400, 24 * 365 * 3, -24 * 30)


def _groups() -> list[list[str]]:
    """The doppelganger groups of the certificates (sharing subject and key), by key."""
    keys: dict[str, list[str]] = {}
    for sha, info in g.certificates().items():
        keys.setdefault(info.doppelganger_key, []).append(sha)
    return [sorted(keys[key]) for key in sorted(keys) if len(keys[key]) > 1]


GROUPS = _groups()
GROUPED = sorted(sha for group in GROUPS for sha in group)
# Whole groups, about a dozen certificates: what the tests of what is carried list.
POOL = sorted(sha for group in GROUPS[:5] for sha in group)


def _crl_ok(sha: str) -> bool:
    try:
        g._crl_entry({"sha256": sha, "crl": {"at": TIMES[0], "source": "crl:x"}})
    except ValueError:
        return False
    return True


CRLABLE = frozenset(sha for sha in CERTS if _crl_ok(sha))


def _record(rng: random.Random, sha: str) -> Json:
    spec: Json = {"sha256": sha}
    if rng.random() < 0.6:
        spec["operator"] = rng.choice(["jprs", "other", ""])
    if rng.random() < 0.2:
        spec["lifecycle"] = rng.choice(["unused", "decommissioned", "active"])
    if rng.random() < 0.25:
        spec["revoked"] = {"at": rng.choice(TIMES), "reason": rng.choice(REASONS)}
    pick = rng.random()
    if pick < 0.15 and sha in g.ccadb_rows():
        spec["disclosure"] = "ccadb"
    elif pick < 0.3:
        disclosure: Json = {
            "revocation_status": rng.choice(["Not Revoked", "Revoked", "Parent Cert Revoked"]),
            "revocation_reason": rng.choice(["", "keyCompromise", "superseded"]),
            "technically_constrained": rng.random() < 0.2,
            "audits": rng.choice([[], [AUDITS["a2019"]], [AUDITS["a2019"], AUDITS["s2020"]]]),
        }
        date = rng.choice([None, "2020-05-01", "2021-01-10"])
        if date is not None:
            disclosure["revocation_date"] = date
        spec["disclosure"] = disclosure
    if rng.random() < 0.2:
        spec["audits"] = rng.sample(sorted(AUDITS), rng.randint(1, 2))
    if sha in CRLABLE and rng.random() < 0.25:
        source = rng.choice(["crl:http://a", "crl:http://b"])
        spec["crl"] = {"at": rng.choice(TIMES), "reason": rng.choice(REASONS), "source": source}
    return spec


def _header(rng: random.Random) -> Json:
    header: Json = {"issued_at": rng.choice(TIMES), "expires_at": rng.choice(TIMES)}
    if rng.random() < 0.3:
        header["profiles"] = [
            {
                "operator": rng.choice(["jprs", "other"]),
                "serial_bytes": rng.choice([None, 16, 9]),
                "max_validity_days": rng.choice([None, 3650, 1000]),
            }
        ]
    return header


@dataclass
class SideState:
    """One party's snapshot as specs: its records, its previous snapshot's, its header."""

    party: str
    records: dict[str, Json]
    previous: dict[str, Json] | None = None
    header: Json | None = None
    max_age_days: int | None = None

    def side(self, role: str) -> Side:
        previous = self.previous
        return Side(
            self.party,
            [_record_of(spec) for spec in self.records.values()],
            header=None if self.header is None else g._header(self.party, role, self.header),
            previous=None if previous is None else tuple(map(_record_of, previous.values())),
            max_age=None if self.max_age_days is None else timedelta(days=self.max_age_days),
        )


_RECORDS: dict[str, CertRecord] = {}


def _record_of(spec: Json) -> CertRecord:
    """The record of `spec`, assembled once: the same spec gives the same object."""
    key = json.dumps(spec, sort_keys=True)
    if key not in _RECORDS:
        (_RECORDS[key],) = g._records([spec], AUDIT_PERIODS)
    return _RECORDS[key]


@dataclass
class Pairing:
    root: SideState
    sub: SideState
    at: datetime
    pool: list[str] = field(default_factory=list)


def _first(rng: random.Random) -> Pairing:
    pool = sorted(set(rng.sample(CERTS, 24)) | set(rng.sample(GROUPED, 8)))
    states = []
    for party in ("secom", "jprs"):
        listed = rng.sample(pool, rng.randint(0, len(pool)))
        state = SideState(party, {sha: _record(rng, sha) for sha in sorted(listed)})
        if rng.random() < 0.7:
            state.header = _header(rng)
        if rng.random() < 0.6:
            state.previous = {sha: _record(rng, sha) for sha in rng.sample(pool, 10)}
        if rng.random() < 0.2:
            state.max_age_days = rng.choice([1, 30, 400])
        states.append(state)
    at = g._time(rng.choice(TIMES)) + timedelta(hours=rng.randint(0, 5000))
    return Pairing(states[0], states[1], at, pool)


def _next(rng: random.Random, pairing: Pairing) -> Pairing:
    """The pairing a little later: each side may push a changed snapshot, and the clock moves."""
    sides = []
    for state in (pairing.root, pairing.sub):
        if rng.random() < 0.5:  # this side did not push: the same snapshot is compared
            sides.append(state)
            continue
        records = dict(state.records)
        for sha in rng.sample(pairing.pool, rng.randint(0, 4)):
            if sha in records and rng.random() < 0.4:
                del records[sha]
            else:
                records[sha] = _record(rng, sha)
        previous = state.records if rng.random() < 0.9 else state.previous
        header = state.header
        if header is not None and rng.random() < 0.3:
            header = _header(rng)
        sides.append(replace(state, records=records, previous=previous, header=header))
    hours = rng.choice(STEPS) + rng.randint(0, 3)
    return Pairing(sides[0], sides[1], pairing.at + timedelta(hours=hours), pairing.pool)


def _check(pairing: Pairing, before: Reconciled | None) -> carry.Carried:
    root, sub = pairing.root.side("root"), pairing.sub.side("subordinate")
    carried = reconcile_carried(root, sub, pairing.at, before)
    assert carried.findings == reconcile(root, sub, pairing.at)
    assert carried.compared >= 0 and carried.carried >= 0
    return carried


@settings(max_examples=150)
@given(st.randoms(use_true_random=False), st.integers(min_value=1, max_value=5))
def test_carried_findings_are_those_of_a_full_reconciliation(
    rng: random.Random, steps: int
) -> None:
    pairing = _first(rng)
    before = _check(pairing, None).reconciled
    for _ in range(steps):
        pairing = _next(rng, pairing)
        before = _check(pairing, before).reconciled


def _bug_pairing(missing: tuple[str, ...] = ()) -> tuple[Side, Side]:
    """SECOM lists every certificate of the demo's pool; JPRS all but `missing`."""
    pool = POOL
    root = SideState("secom", {sha: {"sha256": sha, "operator": "jprs"} for sha in pool})
    listed = {sha: {"sha256": sha} for sha in pool if sha not in missing}
    sub = SideState("jprs", listed)
    for state in (root, sub):
        state.header = {"issued_at": "2020-01-01T00:00:00Z", "expires_at": "2040-01-01T00:00:00Z"}
    return root.side("root"), sub.side("subordinate")


AT = g._time("2020-06-01T00:00:00Z")


def _expiry(sha: str) -> datetime:
    return g.certificates()[sha].not_after


def test_nothing_changed_compares_nothing() -> None:
    root, sub = _bug_pairing(missing=(POOL[0],))
    first = reconcile_carried(root, sub, AT, None)
    again = reconcile_carried(root, sub, AT + timedelta(hours=1), first.reconciled)
    assert (first.compared, first.carried) == (len(POOL), 0)
    assert (again.compared, again.carried) == (0, len(POOL))
    assert again.findings == first.findings
    assert MISSING_AT_SUBORDINATE in {f.code for f in again.findings}


def test_a_record_gone_compares_its_doppelganger_group_alone() -> None:
    root, sub = _bug_pairing()
    first = reconcile_carried(root, sub, AT, None)
    gone = POOL[0]
    root2, sub2 = _bug_pairing(missing=(gone,))
    again = reconcile_carried(root2, sub2, AT, first.reconciled)
    key = g.certificates()[gone].doppelganger_key
    group = {sha for sha in POOL if g.certificates()[sha].doppelganger_key == key}
    assert again.compared == len(group) and len(group) > 1
    assert again.findings == reconcile(root2, sub2, AT)
    assert DOPPELGANGER_UNTRACKED in {f.code for f in again.findings}


def test_a_certificate_expiring_between_two_reports_is_compared_again() -> None:
    shas = sorted(POOL, key=_expiry)
    first_expiry = _expiry(shas[0])
    before = first_expiry - timedelta(days=1)
    root, sub = _bug_pairing(missing=(shas[0],))
    first = reconcile_carried(root, sub, before, None)
    after = first_expiry + timedelta(days=1)
    again = reconcile_carried(root, sub, after, first.reconciled)
    expiring = {sha for sha in shas if before <= _expiry(sha) <= after}
    assert shas[0] in expiring and again.compared >= len(expiring)
    assert again.compared < len(shas)
    assert again.findings == reconcile(root, sub, after)
    assert again.findings != first.findings  # the missing certificate's severity fell


def test_a_changed_profile_compares_everything() -> None:
    root, sub = _bug_pairing()
    first = reconcile_carried(root, sub, AT, None)
    assert sub.header is not None
    profiled = g._header("jprs", "subordinate", {
        "issued_at": "2020-01-01T00:00:00Z", "expires_at": "2040-01-01T00:00:00Z",
        "profiles": [{"operator": "jprs", "serial_bytes": 16}],
    })  # fmt: skip
    sub2 = replace(sub, header=profiled)
    again = reconcile_carried(root, sub2, AT, first.reconciled)
    assert (again.compared, again.carried) == (len(POOL), 0)
    assert again.findings == reconcile(root, sub2, AT)


RULES = Path(carry.__file__).resolve().parent / "rules"
# A tripwire, not a proof: it counts the texts `ctx.at`, `self.at` and `at)` in each rule module,
# so a comparison made through `ctx.live`/`ctx.expired` or a local copy of the clock passes it
# (the differential test is what holds the instants to the rules).
# Each rule module's comparisons with the clock, each one covered by `carry.instants`
# (validity, revocations and their 7 days, disclosure deadlines, CCADB's dates, audit reports)
# or made on headers only (stale_peer). A change here means a new comparison: cover it there.
CLOCK_USES = {
    "audit_overdue.py": 1,  # CCADB's next audit report due
    "context.py": 3,  # revocation_at (revoked_at), expired (not_after)
    "disappeared.py": 1,  # revocation_at
    "disclosure.py": 1,  # notBefore + 7 days
    "doppelganger.py": 1,  # revocation_at
    "doppelganger_inconsistent.py": 2,  # revocation_at, CCADB's next audit report due
    "stale_peer.py": 3,  # headers only: made again every time
    "status.py": 2,  # revocation_at
    "status_public.py": 5,  # revocation_at, CRL entries' dates, CCADB's revocation date
}


def test_every_use_of_the_clock_by_a_rule_is_known() -> None:
    found = {
        path.name: len(re.findall(r"\bctx\.at\b|\bself\.at\b|\bat\)", path.read_text()))
        for path in sorted(RULES.glob("*.py"))
    }
    assert {name: n for name, n in found.items() if n} == CLOCK_USES


def test_the_clock_instants_of_a_revoked_disclosed_record() -> None:
    sha = sorted(g.ccadb_rows())[0]
    disclosure: Json = {"revocation_status": "Revoked", "revocation_date": "2021-01-10"}
    disclosure["audits"] = [AUDITS["a2019"]]
    spec = {"sha256": sha, "revoked": {"at": TIMES[1]}, "disclosure": disclosure}
    (record,) = g._records([spec], AUDIT_PERIODS)
    info = g.certificates()[sha]
    assert set(carry.instants(record)) == {
        info.not_before + timedelta(days=7),  # not-disclosed is due
        info.not_after,  # expired
        g._time(TIMES[1]),  # revoked
        g._time("2021-01-10T00:00:00Z"),  # revoked in CCADB
        g._time("2021-04-01T00:00:00Z"),  # next audit report due: 2019-12-31 + 365 + 92 days
    }


def test_a_certificate_expiring_at_the_new_clock_is_compared_again() -> None:
    sha = min(POOL, key=_expiry)
    expiry = _expiry(sha)
    root, sub = _bug_pairing(missing=(sha,))
    first = reconcile_carried(root, sub, expiry - timedelta(seconds=1), None)
    again = reconcile_carried(root, sub, expiry, first.reconciled)  # not_after <= at: expired
    assert sha not in {f.sha256 for f in first.findings if f.severity.value == "notice"}
    assert again.findings == reconcile(root, sub, expiry)
    assert sha in {f.sha256 for f in again.findings if f.severity.value == "notice"}


def test_a_group_left_with_one_member_compares_that_member() -> None:
    group = next(grp for grp in GROUPS if len(grp) == 2)
    kept, gone = group
    spec = {"issued_at": "2020-01-01T00:00:00Z", "expires_at": "2040-01-01T00:00:00Z"}
    root = SideState("secom", {sha: {"sha256": sha} for sha in group}, header=spec)
    sub = SideState("jprs", {gone: {"sha256": gone}}, header=spec)
    first = reconcile_carried(root.side("root"), sub.side("subordinate"), AT, None)
    assert {f.sha256 for f in first.findings if f.code == DOPPELGANGER_UNTRACKED} == {kept}
    root.records.pop(gone)
    sub.records.pop(gone)
    now = (root.side("root"), sub.side("subordinate"), AT)
    again = reconcile_carried(*now, first.reconciled)
    assert again.findings == reconcile(*now)
    assert DOPPELGANGER_UNTRACKED not in {f.code for f in again.findings}
    assert (again.compared, again.carried) == (1, 0)  # the one left alone in its group


def test_a_changed_revocation_is_due_at_its_new_date_only() -> None:
    sha = POOL[0]  # no certificate of POOL has an instant in 2021-03..2021-08
    root, sub = (SideState(p, {s: {"sha256": s} for s in POOL}) for p in ("secom", "jprs"))
    sub.records[sha] = {"sha256": sha, "revoked": {"at": "2021-05-01T00:00:00Z"}}
    at = g._time("2021-03-01T00:00:00Z")
    first = reconcile_carried(root.side("root"), sub.side("subordinate"), at, None)
    sub.records[sha] = {"sha256": sha, "revoked": {"at": "2021-09-01T00:00:00Z"}}
    moved = reconcile_carried(root.side("root"), sub.side("subordinate"), at, first.reconciled)
    assert moved.compared == len(next(grp for grp in GROUPS if sha in grp))
    # Past the old date, before the new one: nothing of this certificate is due any more.
    later = g._time("2021-07-01T00:00:00Z")
    again = reconcile_carried(root.side("root"), sub.side("subordinate"), later, moved.reconciled)
    assert again.compared == 0
    assert again.findings == reconcile(root.side("root"), sub.side("subordinate"), later)


HEADER = {"issued_at": "2020-01-01T00:00:00Z", "expires_at": "2040-01-01T00:00:00Z"}


def test_a_crl_entry_dropped_compares_its_issuers_other_records() -> None:
    # Y is revoked by JPRS; its issuer's CRL is known through X's entry. X's entry gone, the
    # CRL is no longer known: Y's "the issuer's CRL does not list it" goes with it.
    by_issuer: dict[tuple[bytes, str | None], list[str]] = {}
    for sha in sorted(CRLABLE):
        info = g.certificates()[sha]
        by_issuer.setdefault((info.issuer_der, info.aki), []).append(sha)
    x, y = next(shas for shas in by_issuer.values() if len(shas) >= 2)[:2]
    at = g._time("2021-06-01T00:00:00Z")
    root = SideState(
        "secom", {sha: {"sha256": sha, "operator": "jprs"} for sha in (x, y)}, header=HEADER
    )
    revoked = {"sha256": y, "revoked": {"at": "2021-01-05T00:00:00Z", "reason": "superseded"}}
    crl = {"at": "2021-01-05T00:00:00Z", "source": "crl:http://a"}
    sub = SideState("jprs", {y: revoked, x: {"sha256": x, "crl": crl}}, header=HEADER)
    first = reconcile_carried(root.side("root"), sub.side("subordinate"), at, None)
    unlisted = [f for f in first.findings if f.code == STATUS_MISMATCH and f.sha256 == y]
    assert unlisted and "does not list it" in unlisted[0].message
    sub.records[x] = {"sha256": x}
    now = (root.side("root"), sub.side("subordinate"), at)
    again = reconcile_carried(*now, first.reconciled)
    assert again.findings == reconcile(*now)
    assert not [f for f in again.findings if "does not list it" in f.message]


def _capable_until_2030(sha: str) -> bool:
    info = g.certificates().get(sha)
    late = g._time("2030-01-01T00:00:00Z")
    return (
        info is not None
        and info.is_ca
        and not info.technically_constrained
        and info.not_after > late
    )


def test_an_instant_at_the_old_clock_is_due() -> None:
    # audit-overdue turns once the clock is past (`<`) the next report's due date: a clock
    # moving from exactly that date to an hour later must compare the certificate again.
    sha = min(s for s in g.ccadb_rows() if _capable_until_2030(s))
    disclosure = {"audits": [{"kind": "br", "start": "2023-01-01", "end": "2023-12-31"}]}
    root = SideState("secom", {sha: {"sha256": sha, "operator": "jprs", "disclosure": disclosure}})
    root.header = HEADER
    sub = SideState("jprs", {sha: {"sha256": sha}}, header=HEADER)
    due = g._time("2023-12-31T00:00:00Z") + timedelta(days=365 + 92)
    first = reconcile_carried(root.side("root"), sub.side("subordinate"), due, None)
    assert AUDIT_OVERDUE not in {f.code for f in first.findings}
    later = (root.side("root"), sub.side("subordinate"), due + timedelta(hours=1))
    again = reconcile_carried(*later, first.reconciled)
    assert again.findings == reconcile(*later)
    assert AUDIT_OVERDUE in {f.code for f in again.findings}


def test_equal_records_that_are_other_objects_are_compared_again() -> None:
    # One instant, written in UTC and in +09:00: equal records, other texts in the findings.
    sha = POOL[0]
    root, sub = _bug_pairing()
    utc = datetime(2020, 3, 1, 20, 0, tzinfo=UTC)
    index = [r.sha256 for r in sub.records].index(sha)

    def revoked(at: datetime) -> Side:
        record = replace(sub.records[index], revocation=Revocation(at, "superseded", "log:x"))
        return replace(sub, records=[*sub.records[:index], record, *sub.records[index + 1 :]])

    first = reconcile_carried(root, revoked(utc), AT, None)
    jst = revoked(utc.astimezone(timezone(timedelta(hours=9))))
    assert jst.records[index] == revoked(utc).records[index]
    again = reconcile_carried(root, jst, AT, first.reconciled)
    assert again.findings == reconcile(root, jst, AT) != first.findings
    assert again.compared == len(next(grp for grp in GROUPS if sha in grp))


def test_a_list_with_duplicates_is_compared_in_full() -> None:
    # A previous list that is no snapshot may name a certificate twice: disappeared reports
    # each copy, so nothing of it is carried.
    sha = POOL[0]
    root, sub = _bug_pairing(missing=(sha,))
    (record,) = g._records([{"sha256": sha}], AUDIT_PERIODS)
    first = reconcile_carried(root, replace(sub, previous=(record,)), AT, None)
    twice = replace(sub, previous=(record, record))
    again = reconcile_carried(root, twice, AT, first.reconciled)
    assert again.findings == reconcile(root, twice, AT)
    assert [f.code for f in again.findings].count(DISAPPEARED) == 2
    assert again.carried == 0


def test_an_instant_past_the_last_datetime_is_no_instant() -> None:
    # CCADB's next audit report after a period ending 9999-12-31 cannot be written as a
    # datetime; audit-overdue never asks for it here (the certificate is constrained).
    sha = POOL[0]
    disclosure = {
        "technically_constrained": True,
        "audits": [{"kind": "br", "start": "9999-01-01", "end": "9999-12-31"}],
    }
    root = SideState("secom", {s: {"sha256": s, "operator": "jprs"} for s in POOL}, header=HEADER)
    root.records[sha] = {"sha256": sha, "operator": "jprs", "disclosure": disclosure}
    sub = SideState("jprs", {s: {"sha256": s} for s in POOL}, header=HEADER)
    first = reconcile_carried(root.side("root"), sub.side("subordinate"), AT, None)
    now = (root.side("root"), sub.side("subordinate"), AT + timedelta(hours=1))
    assert reconcile_carried(*now, first.reconciled).findings == reconcile(*now)
