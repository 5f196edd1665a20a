"""How `agent run --once` ends when it ran but something needs a person: its own errors, kept
apart from the daemon so that the entry point maps them to exit codes without loading it."""

from __future__ import annotations

from invsync.agent.errors import ReportError


class IncompleteReport(ReportError):
    """`agent run --once` ended with a report some party has not signed: exit 1, like a failed
    verification (agent.cli.entry.EXIT_CODES)."""


class ErrorFindings(ReportError):
    """`agent run --once` ended with reports that hold open findings of severity error: exit 1,
    as `reconcile` does (agent.cli.entry.EXIT_CODES)."""

    hint = "Read the report the line above names; `invsync status` lists the open findings."


class LintFindings(ReportError):
    """`inventory lint` found certificates with findings of severity ERROR or FATAL: exit 1."""

    hint = "Each line names the certificate and pkilint's finding code; see its CA/B Forum rule."
