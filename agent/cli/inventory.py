"""`invsync inventory`: import sources into an agent's database, list, show and export it."""

from __future__ import annotations

import base64
import csv
import io
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from invsync.agent.cli.lint import lint_command
from invsync.agent.cli.options import (
    audit_options,
    config_option,
    database_path,
    format_option,
    max_source_bytes_option,
)
from invsync.agent.config.settings import load_agent_config
from invsync.agent.errors import InvsyncError
from invsync.agent.files import write_atomically
from invsync.agent.gc_pause import collector_paused
from invsync.agent.inventory.assemble import Assembled
from invsync.agent.inventory.attribution import Attribution
from invsync.agent.inventory.collect import collect
from invsync.agent.inventory.details import record_details
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.facts import AuditPeriod
from invsync.agent.model.record import CertRecord
from invsync.agent.report.render.text import visible
from invsync.agent.sources.reading import source_size_cap
from invsync.agent.store.agent_store import AgentStore
from invsync.agent.telemetry.progress import terminal_progress
from invsync.agent.times import rfc3339


class NotInInventory(InvsyncError):
    hint = "List the inventory with `invsync inventory list`; fingerprints are SHA-256."


def _store(db: Path | None, config: Path | None) -> AgentStore:
    return AgentStore(database_path(db, config))


@contextmanager
def _removed_if_failed(path: Path) -> Iterator[None]:
    """A database this command creates is removed (with its -wal and -shm) if the command fails:
    a failed import leaves no new, empty database behind."""
    created = not path.exists()
    try:
        yield
    except BaseException:
        if created:
            for leftover in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
                leftover.unlink(missing_ok=True)
        raise


def _where(f: Callable[..., None]) -> Callable[..., None]:
    f = config_option("An agent configuration; its [agent] database is used.")(f)
    return click.option(
        "--db", type=click.Path(path_type=Path, dir_okay=False), help="The agent's SQLite database."
    )(f)


@click.group("inventory")
def inventory_group() -> None:
    """Import, list, show and export a party's inventory of CA certificates."""


@inventory_group.command("import")
@click.argument("sources", nargs=-1, required=True)
@_where
@click.option(
    "--skip-invalid", is_flag=True, help="Import the valid rows and report every skipped one."
)
@audit_options
@click.option(
    "--ct-state",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where CT log resume positions are kept (default: beside the database).",
)
@max_source_bytes_option("the configuration's agent.max_source_bytes, else 256 MiB")
def import_command(
    sources: tuple[str, ...],
    db: Path | None,
    config: Path | None,
    skip_invalid: bool,
    audit: AuditPeriod | None,
    ct_state: Path | None,
    max_source_bytes: int | None,
) -> None:
    """Import SOURCE... into the inventory in one transaction.

    A SOURCE is a PEM/DER file or directory, a PKCS#7 bundle, an issuance log (.jsonl or .csv),
    a CCADB report (.csv or .csv.gz, or a directory of them with ccadb:DIR), an audit scope list
    (.csv, .txt, .pdf), a CRL (.crl), CT get-entries responses (.json) or a CT log URL;
    KIND:PATH overrides detection. Nothing is written if any source cannot be read, unless
    --skip-invalid is given, when the valid rows are imported and every skipped one is listed.
    """
    path = database_path(db, config)
    cap = max_source_bytes or (load_agent_config(config).max_source_bytes if config else None)
    with (
        # agent.gc_pause: tens of thousands of records built and kept, then the process ends.
        collector_paused(exiting=True),
        _removed_if_failed(path),
        source_size_cap(cap),
        AgentStore(path) as store,
    ):
        now = datetime.now(UTC)
        ctx = SourceContext(
            now=now,
            party_ca_spkis=_ca_spkis(config),
            audit=audit,
            skip_invalid=skip_invalid,
            progress=terminal_progress("reading"),
        )
        held = [_without_derived(r) for r in store.inventory()]
        # Without a configuration there are no rules, but the issuance log still attributes.
        state = ct_state or store.path.with_suffix(".ct-progress.json")
        collected = collect(
            [(s, None) for s in sources],
            ctx,
            known=[r.info for r in held],
            ct_state=state,
            base=Facts(records=tuple(held)),
            attribution=_attribution(config),
        )
        assembled = collected.assembled
        store.import_records(assembled.records, now)
        collected.commit_ct_progress(state)
    _summary(assembled, len(held))


def _ca_spkis(config: Path | None) -> list[bytes]:
    return load_agent_config(config).ca_spkis() if config else []


def _attribution(config: Path | None) -> Attribution:
    return load_agent_config(config).attribution if config else Attribution()


def _without_derived(record: CertRecord) -> CertRecord:
    """A stored record as sources stated it: a CRL-derived revocation is re-derived on import."""
    if record.revocation and record.revocation.source.startswith("crl:"):
        return replace(record, revocation=None)
    return record


def _summary(assembled: Assembled, held_before: int) -> None:
    records = assembled.records
    click.echo(f"imported: {len(records)} certificates in the inventory ({held_before} before)")
    unattributed = sum(1 for r in records if r.info.is_ca and not r.operator)
    facts = [
        ("CCADB disclosures about certificates not held", len(assembled.unmatched_disclosures)),
        ("audit scope entries about certificates not held", len(assembled.unmatched_audit_scope)),
        ("CRL entries matching no certificate held", len(assembled.unmatched_crl_entries)),
        ("CA certificates with no operator", unattributed),
    ]
    for label, count in facts:
        if count:
            click.echo(f"note: {label}: {count}")
    for skipped in assembled.skipped:
        click.echo(f"skipped: {skipped.location}: {skipped.reason}", err=True)
    if assembled.skipped:
        click.echo(f"skipped {len(assembled.skipped)} invalid rows or entries", err=True)


@inventory_group.command("list")
@_where
@click.option("--operator", default=None, help="Only certificates operated by this party.")
@click.option("--unattributed", is_flag=True, help="Only CA certificates with no operator.")
@click.option("--revoked/--unrevoked", default=None, help="Only revoked, or only unrevoked ones.")
@click.option("--source-kind", default=None, help="Only those a source of this kind reported.")
@click.option("--ca-only", is_flag=True, help="Only CA certificates.")
@format_option("text", "json", "csv")
def list_command(
    db: Path | None,
    config: Path | None,
    operator: str | None,
    unattributed: bool,
    revoked: bool | None,
    source_kind: str | None,
    ca_only: bool,
    fmt: str,
) -> None:
    """List the inventory, one certificate a line (or JSON, or CSV)."""
    with _store(db, config) as store:
        records = store.inventory()

    def keep(r: CertRecord) -> bool:
        return (
            (operator is None or r.operator == operator)
            and (not unattributed or (r.info.is_ca and not r.operator))
            and (revoked is None or (r.revocation is not None) == revoked)
            and (source_kind is None or any(s.kind == source_kind for s in r.sources))
            and (not ca_only or r.info.is_ca)
        )

    rows = [_summary_row(r) for r in records if keep(r)]
    click.echo(_render_rows(rows, fmt), nl=False)


_LIST_FIELDS = (
    "sha256",
    "subject",
    "serial",
    "not_before",
    "not_after",
    "operator",
    "revoked_at",
    "sources",
)


def _summary_row(record: CertRecord) -> dict[str, str]:
    info = record.info
    return {
        "sha256": info.sha256,
        "subject": info.subject,
        "serial": info.serial_hex,
        "not_before": rfc3339(info.not_before),
        "not_after": rfc3339(info.not_after),
        "operator": record.operator or "",
        "revoked_at": rfc3339(record.revocation.revoked_at) if record.revocation else "",
        "sources": ";".join(sorted({s.kind for s in record.sources})),
    }


def _render_rows(rows: list[dict[str, str]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=_LIST_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    lines = [f"{r['sha256']}  {r['operator'] or '-':<10} {visible(r['subject'])}" for r in rows]
    return "".join(line + "\n" for line in lines) + f"{len(rows)} certificates\n"


@inventory_group.command("show")
@click.argument("sha256")
@_where
@format_option("text", "json")
def show_command(sha256: str, db: Path | None, config: Path | None, fmt: str) -> None:
    """Every field of one certificate, and every source that reported it."""
    with _store(db, config) as store:
        record = store.record(sha256)
    if record is None:
        raise NotInInventory(f"no certificate {sha256.upper()} in the inventory")
    details = record_details(record)
    if fmt == "json":
        click.echo(json.dumps(details, indent=2, ensure_ascii=False))
        return
    click.echo(details_text(details), nl=False)


def details_text(details: dict[str, object], indent: str = "") -> str:
    """Nested fields as indented `name: value` lines; empty values as "-"."""
    lines = []
    for key, value in details.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:\n" + details_text(value, indent + "  "))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            items = [
                f"{indent}{key}[{i}]:\n" + details_text(v, indent + "  ")
                for i, v in enumerate(value)
            ]
            lines.append("".join(items))
        else:
            lines.append(f"{indent}{key}: {_scalar(value)}\n")
    return "".join(lines)


def _scalar(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(visible(str(v)) for v in value) or "-"
    return "-" if value in ("", None) else visible(str(value))


@inventory_group.command("export")
@_where
@format_option("pem", "jsonl", help="A PEM bundle, or a JSON Lines issuance log that imports back.")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write here instead of standard output.",
)
def export_command(db: Path | None, config: Path | None, fmt: str, output: Path | None) -> None:
    """Export the inventory as a PEM bundle, or as a JSON Lines issuance log that
    `invsync inventory import` reads back."""
    with _store(db, config) as store:
        records = store.inventory()
    text = "".join(_pem(r) if fmt == "pem" else _jsonl(r) for r in records)
    if output is None:
        sys.stdout.write(text)
    else:
        write_atomically(output, text)
        click.echo(f"exported {len(records)} certificates to {output}", err=True)


def _pem(record: CertRecord) -> str:
    return x509.load_der_x509_certificate(record.info.der).public_bytes(Encoding.PEM).decode()


def _jsonl(record: CertRecord) -> str:
    entry: dict[str, str] = {"certificate": base64.b64encode(record.info.der).decode()}
    if record.operator:
        entry["operator"] = record.operator
    if record.lifecycle:
        entry["lifecycle"] = record.lifecycle
    if record.revocation and not record.revocation.source.startswith("crl:"):
        entry["revoked_at"] = rfc3339(record.revocation.revoked_at)
        if record.revocation.reason:
            entry["revocation_reason"] = record.revocation.reason
    return json.dumps(entry) + "\n"


# Its own module: the opt-in linter's command is not part of the inventory's plumbing.
inventory_group.add_command(lint_command)
