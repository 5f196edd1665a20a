"""Options several commands share."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from invsync.agent.config.settings import load_agent_config
from invsync.agent.errors import ConfigError
from invsync.agent.model.facts import AuditPeriod

_DAY = click.DateTime(["%Y-%m-%d"])
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
PinnedIds = dict[str, frozenset[str]]  # what `--pin` gives a command: name -> key ids


def format_option(*choices: str, help: str = "Output format.") -> Decorator:
    """`--format` (passed as `fmt`), the first choice the default."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=choices[0],
        show_default=True,
        help=help,
    )


def max_source_bytes_option(default: str) -> Decorator:
    """`--max-source-bytes`, the cap a source file must stay under (None: `default` applies),
    which the size refusal names as the way to raise it."""
    return click.option(
        "--max-source-bytes",
        type=click.IntRange(min=1),
        default=None,
        help=f"Refuse a source file larger than this many bytes (default: {default}).",
    )


def pin_option(help: str) -> Decorator:
    """`--pin NAME=KEYID`, repeatable, passed as `pins`: signer name -> the key ids pinned for
    it. Every command that pins keys parses them here, so one malformed pin is refused alike."""
    return click.option(
        "--pin",
        "pins",
        multiple=True,
        metavar="NAME=KEYID",
        callback=_parse_pins,
        help=help,
    )


def _parse_pins(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> PinnedIds:
    return parse_pins(values)


def parse_pins(pins: tuple[str, ...]) -> PinnedIds:
    """NAME=KEYID options as name -> key ids: NAME non-empty, the key id 64 lowercase hex digits
    (a key id is the SHA-256 of the key); a usage error naming the first bad pin otherwise."""
    parsed: PinnedIds = {}
    for pin in pins:
        name, sep, keyid = pin.partition("=")
        if not sep or not name or len(keyid) != 64 or keyid.strip("0123456789abcdef"):
            raise click.BadParameter(
                f"{pin!r}: expected NAME=KEYID, the key id 64 lowercase hex digits",
                param_hint="--pin",
            )
        parsed[name] = parsed.get(name, frozenset()) | {keyid}
    return parsed


def config_option(help: str, required: bool = False) -> Decorator:
    """`--config FILE` (passed as `config_path` when required, else `config`)."""
    name = "config_path" if required else "config"
    return click.option(
        "--config",
        name,
        required=required,
        type=click.Path(path_type=Path, dir_okay=False),
        help=help,
    )


def audit_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--audit-kind/-start/-end/-statement-date, passed to the command as `audit`."""
    options = [
        click.option("--audit-statement-date", type=_DAY, default=None, help="Statement date."),
        click.option("--audit-end", type=_DAY, default=None, help="Audit period end (YYYY-MM-DD)."),
        click.option("--audit-start", type=_DAY, default=None, help="Audit period start."),
        click.option("--audit-kind", default="", help="Which audit, e.g. 'WebTrust BR'."),
    ]

    def wrapper(**kwargs: Any) -> Any:
        kwargs["audit"] = _audit(
            kwargs.pop("audit_kind"),
            kwargs.pop("audit_start"),
            kwargs.pop("audit_end"),
            kwargs.pop("audit_statement_date"),
        )
        return f(**kwargs)

    wrapper.__name__ = f.__name__
    wrapper.__doc__ = f.__doc__
    # Options declared below this decorator were attached to `f`; keep them.
    wrapper.__click_params__ = list(getattr(f, "__click_params__", []))  # type: ignore[attr-defined]
    for option in options:
        wrapper = option(wrapper)
    return wrapper


def _audit(
    kind: str, start: datetime | None, end: datetime | None, statement: datetime | None
) -> AuditPeriod | None:
    """The audit an audit-scope list belongs to, or None when none of the options was given."""
    if not (kind or start or end or statement):
        return None
    if start and end and start > end:
        raise click.BadParameter("the audit period ends before it starts", param_hint="--audit-end")
    return AuditPeriod(
        kind,
        start.date() if start else None,
        end.date() if end else None,
        statement.date() if statement else None,
    )


def database_path(db: Path | None, config: Path | None) -> Path:
    """The agent database a command reads: --db, or the database of the --config file."""
    if db is None and config is None:
        raise ConfigError(
            "name the database with --db PATH or an agent configuration with --config"
        )
    if db is not None:
        return db
    assert config is not None
    return load_agent_config(config).database
