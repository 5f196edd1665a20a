"""The inventory part of the agent's configuration: audit scope lists, attribution, profiles.

[[audit_scope]]                  # one table per audit statement's list of CA certificates
source = "audits/webtrust-br-2020.csv"
kind = "WebTrust BR"
period_start = 2019-10-30        # TOML dates, unquoted
period_end = 2020-10-29
statement_date = 2021-01-20

[attribution]                    # root side: who operates the CA certificates we issued
ccadb_owners = { "JPRS" = "jprs" }   # CCADB "Subordinate CA Owner" -> party id

[[attribution.rules]]
operator = "jprs"
subject_organizations = ["Japan Registry Services Co., Ltd."]
subject_key_ids = []             # uppercase hex
sha256 = []                      # fingerprints, uppercase hex

[profiles.jprs]                  # what the operator declares its CA certificates look like
serial_bytes = 16
allowed_ekus = ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]
max_validity_days = 3650
effective_from = 2019-07-01T00:00:00Z   # optional: for certificates issued (notBefore) from then
effective_until = 2030-01-01T00:00:00Z  # optional: and before then

[[acknowledgements]]             # a finding this party knows about, signed in its snapshots
code = "not-in-audit-scope"
sha256 = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
reason = "revocation planned for 2021-04"
acknowledged_at = 2021-02-15T00:00:00Z  # TOML date-times with an offset, unquoted
expires_at = 2021-04-30T00:00:00Z
"""

from __future__ import annotations

from dataclasses import dataclass

from invsync.agent.inventory.attribution import Attribution, AttributionRule
from invsync.agent.model.acknowledgements import Acknowledgement
from invsync.agent.model.facts import AuditPeriod
from invsync.agent.model.findings import CATALOGUE
from invsync.agent.model.profiles import OperatorProfile
from invsync.agent.sources.ccadb import normalize_owner
from invsync.agent.tomlconf import Table


@dataclass(frozen=True)
class AuditScopeSource:
    spec: str
    audit: AuditPeriod


def audit_scope_sources(root: Table) -> tuple[AuditScopeSource, ...]:
    return tuple(_audit_scope(table) for table in root.array("audit_scope"))


def _audit_scope(table: Table) -> AuditScopeSource:
    table.only(["source", "kind", "period_start", "period_end", "statement_date"])
    period = AuditPeriod(
        table.text("kind", ""),
        table.day("period_start"),
        table.day("period_end"),
        table.day("statement_date"),
    )
    if period.period_start and period.period_end and period.period_start > period.period_end:
        raise table.fail("period_end", "is before period_start")
    return AuditScopeSource(str(table.resolve(table.text("source"))), period)


def attribution(root: Table) -> Attribution:
    table = root.optional_table("attribution")
    if table is None:
        return Attribution()
    table.only(["ccadb_owners", "rules"])
    owners = {normalize_owner(k): v for k, v in table.text_map("ccadb_owners").items()}
    return Attribution(tuple(_rule(t) for t in table.array("rules")), owners)


def _rule(table: Table) -> AttributionRule:
    table.only(["operator", "subject_organizations", "subject_key_ids", "sha256"])
    rule = AttributionRule(
        operator=table.text("operator"),
        sha256=frozenset(v.upper() for v in table.texts("sha256", [])),
        subject_key_ids=frozenset(v.upper() for v in table.texts("subject_key_ids", [])),
        subject_organizations=frozenset(table.texts("subject_organizations", [])),
    )
    if not (rule.sha256 or rule.subject_key_ids or rule.subject_organizations):
        raise table.fail(
            "operator", "a rule needs sha256, subject_key_ids or subject_organizations"
        )
    return rule


def profiles(root: Table) -> tuple[OperatorProfile, ...]:
    tables = root.tables("profiles") if "profiles" in root.names() else {}
    return tuple(_profile(name, table) for name, table in tables.items())


def _profile(operator: str, table: Table) -> OperatorProfile:
    table.only(
        ["serial_bytes", "allowed_ekus", "max_validity_days", "effective_from", "effective_until"]
    )
    has = table.names()
    start = table.moment("effective_from") if "effective_from" in has else None
    end = table.moment("effective_until") if "effective_until" in has else None
    if start is not None and end is not None and end <= start:
        raise table.fail("effective_until", "must be after effective_from")
    return OperatorProfile(
        operator=operator,
        serial_bytes=table.integer("serial_bytes") if "serial_bytes" in has else None,
        allowed_ekus=tuple(table.texts("allowed_ekus", [])),
        max_validity_days=table.integer("max_validity_days")
        if "max_validity_days" in has
        else None,
        effective_from=start,
        effective_until=end,
    )


def acknowledgements(root: Table) -> tuple[Acknowledgement, ...]:
    return tuple(_acknowledgement(table) for table in root.array("acknowledgements"))


def _acknowledgement(table: Table) -> Acknowledgement:
    table.only(["code", "sha256", "reason", "acknowledged_at", "expires_at"])
    code = table.text("code")
    if code not in CATALOGUE:
        raise table.fail("code", f"unknown finding code {code!r} (see `invsync rules`)")
    sha256 = table.text("sha256").upper()
    if len(sha256) != 64 or any(c not in "0123456789ABCDEF" for c in sha256):
        raise table.fail("sha256", f"expected 64 hex digits, got {table.text('sha256')!r}")
    reason = table.text("reason")
    if not reason.strip():
        raise table.fail("reason", "must say why the finding is acknowledged")
    acknowledged_at, expires_at = table.moment("acknowledged_at"), table.moment("expires_at")
    if expires_at <= acknowledged_at:
        raise table.fail("expires_at", "must be after acknowledged_at")
    return Acknowledgement(code, sha256, reason, acknowledged_at, expires_at)
