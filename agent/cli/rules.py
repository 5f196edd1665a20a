"""`invsync rules`: every finding code with its severity, policy and description.

One source, `agent.model.findings.CATALOGUE`, in the order the rules run; the text form is for
people, the JSON form (`--format json`) for tooling that maps codes to policies.
"""

from __future__ import annotations

import json

import click

from invsync.agent.cli.options import format_option
from invsync.agent.model.findings import CATALOGUE, CodeInfo

NO_POLICY = "(no root program policy)"  # text for a code resting on the pairing alone


@click.command("rules")
@format_option(
    "text",
    "json",
    help="text: one code a line with its severity and policy; json: a list of objects.",
)
def rules_command(fmt: str) -> None:
    """List every finding code with its severity, policy, description and what to do."""
    entries = list(CATALOGUE.values())
    click.echo(rules_json(entries) if fmt == "json" else rules_text(entries), nl=False)


def rules_text(entries: list[CodeInfo]) -> str:
    width = max(len(entry.code) for entry in entries)
    lines = [
        f"{entry.code:<{width}}  {entry.severity.value:<7}  {entry.policy or NO_POLICY}\n"
        f"{'':<{width}}  {entry.description}\n"
        f"{'':<{width}}  What to do: {entry.action}\n"
        for entry in entries
    ]
    return "".join(lines)


def rules_json(entries: list[CodeInfo]) -> str:
    objects = [
        {
            "code": entry.code,
            "severity": entry.severity.value,
            "policy": entry.policy,
            "description": entry.description,
            "action": entry.action,
        }
        for entry in entries
    ]
    return json.dumps(objects, indent=2) + "\n"
