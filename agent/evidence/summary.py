"""An auditor's summary of a verified bundle: `evidence.md` and `evidence.html`, rendered from
the templates in agent/evidence/templates/.

Everything printed comes from the log, and some of it from certificates (finding codes and
SHA-256s are ours, but party and pairing names are configuration text a server operator chose),
so every value is escaped on its way out: the HTML environment autoescapes and passes each value
through `report.render.markup.shown`; the Markdown one backslash-escapes every character
Markdown would interpret (`report.render.text.markdown_text`). Only markup a template wrote
itself is left as it is.
"""

from __future__ import annotations

import base64
from functools import cache
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from invsync.agent.evidence.timeline import (
    Event,
    PairingTimeline,
    timelines,
    verdict,
    withheld_text,
)
from invsync.agent.evidence.verify import VerifiedBundle
from invsync.agent.files import write_atomically
from invsync.agent.report.render.markup import shown
from invsync.agent.report.render.text import markdown_text
from invsync.agent.times import rfc3339

# Inside the installed package, so a wheel finds them as a source checkout does.
TEMPLATES = ("invsync.agent", "evidence/templates")
FILES = {"markdown": "evidence.md", "html": "evidence.html"}


def _markdown_value(value: object) -> str:
    return markdown_text(str(value))


@cache
def _environment(kind: str) -> Environment:
    """The HTML environment autoescapes; the Markdown one escapes for Markdown instead."""
    return Environment(
        loader=PackageLoader(*TEMPLATES),
        autoescape=kind == "html",
        undefined=StrictUndefined,
        finalize=shown if kind == "html" else _markdown_value,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_summary(verified: VerifiedBundle, kind: str) -> str:
    """The summary as `kind` ("markdown" or "html")."""
    template = _environment(kind).get_template(f"{FILES[kind]}.j2")
    return template.render(**_context(verified))


def write_summaries(verified: VerifiedBundle, directory: Path) -> list[Path]:
    """Write evidence.md and evidence.html into `directory` (created if need be)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, name in FILES.items():
        write_atomically(directory / name, render_summary(verified, kind))
        written.append(directory / name)
    return written


def _context(verified: VerifiedBundle) -> dict[str, object]:
    bundle, head = verified.bundle, verified.log.head
    return {
        "server": bundle.server,
        "scope": str(bundle.scope),
        "created_at": rfc3339(bundle.created_at),
        "pins": [
            (name, keyid) for name in sorted(verified.pins) for keyid in sorted(verified.pins[name])
        ],
        "size": head.size,
        "root": base64.b64encode(head.root).decode(),
        "held": len(verified.log.leaves),
        "withheld": withheld_text(verified),
        "verdict": verdict(verified).removeprefix("verified: ").capitalize(),
        "pairings": [_pairing(t) for t in timelines(verified)],
    }


def _pairing(timeline: PairingTimeline) -> dict[str, object]:
    return {
        "name": timeline.pairing,
        "counts": {kind: timeline.count(kind) for kind in ("snapshot", "report", "co-signature")},
        "rotations": timeline.count("key rotation"),
        "events": [_event(e) for e in timeline.events],
    }


def _event(event: Event) -> dict[str, object]:
    return {
        "index": event.index,
        "when": rfc3339(event.when) if event.when else "",
        "kind": event.kind,
        "what": event.what,
        "signed": event.signing(),
        "changes": [("opened", f) for f in event.opened]
        + [("resolved", f) for f in event.resolved],
    }
