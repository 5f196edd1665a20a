"""What a running exchange server takes from its configuration file again, on SIGHUP or when the
file changes (issue 14: parties and pairings change without downtime).

Live: the parties (their TLS identities and pinned signing keys), the pairings (and their report
schedules), `tls.client_crl`, and the acceptance bounds (`max_clock_skew_seconds`,
`max_snapshot_validity_seconds`, `max_version_step`). Everything else (the listening address, the
database, the TLS certificate and key, the signing key, the limits) is bound when the server
starts: a change to it is logged as waiting for a restart, and the running value stays.

A new file is checked whole before anything of it is used: it must load, every pinned key and
the CRL must read and verify. One that does not is refused with a log line naming the file and
what is wrong, and the running configuration stays, all of it. A party removed is refused from
the next call on (its TLS identity is no party's); what it pushed stays in the log.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta

from invsync.agent.daemon.reload import added_removed
from invsync.agent.errors import ConfigError, InvsyncError
from invsync.agent.exchange.acceptance import AcceptancePolicy, PairingPolicy, PartyPolicy
from invsync.agent.exchange.keys import VerifyKey, load_verify_key
from invsync.server.client_crl import Revoked, load_revoked
from invsync.server.config import PartyConfig, ServerConfig

# The [server] keys a reload applies; the others take a restart.
LIVE_SERVER_KEYS = frozenset(
    {"max_clock_skew_seconds", "max_snapshot_validity_seconds", "max_version_step"}
)
_NOT_SERVER_KEYS = frozenset({"file", "tls", "parties", "pairings", "limits", "keepalive"})


@dataclass(frozen=True)
class LiveParts:
    """What calls and the report schedule read of the configuration, made from one file."""

    policy: AcceptancePolicy
    identities: dict[str, str]  # TLS Common Name -> party
    revoked: Revoked
    schedules: dict[str, str]  # pairing -> report schedule


def live_parts(config: ServerConfig) -> LiveParts:
    """Every key and the CRL of `config` read and checked; raises the project error naming the
    file and key of the first that fails."""
    return LiveParts(
        policy=policy_of(config),
        identities={p.tls_identity: name for name, p in config.parties.items()},
        revoked=revoked_of(config),
        schedules={name: p.report_schedule for name, p in config.pairings.items()},
    )


def policy_of(config: ServerConfig) -> AcceptancePolicy:
    parties = {name: PartyPolicy(name, _pinned(config, p)) for name, p in config.parties.items()}
    pairings = {
        name: PairingPolicy(name, p.root, p.subordinate) for name, p in config.pairings.items()
    }
    return AcceptancePolicy(
        parties=parties,
        pairings=pairings,
        max_clock_skew=timedelta(seconds=config.max_clock_skew_seconds),
        max_validity=timedelta(seconds=config.max_snapshot_validity_seconds),
        max_version_step=config.max_version_step,
    )


def _pinned(config: ServerConfig, party: PartyConfig) -> dict[str, VerifyKey]:
    try:
        keys = [load_verify_key(path) for path in party.signing_keys]
    except InvsyncError as e:
        raise ConfigError(f"{config.file}: parties.{party.name}.signing_keys: {e}") from e
    return {key.keyid: key for key in keys}


def revoked_of(config: ServerConfig) -> Revoked:
    """The revoked client certificates of `tls.client_crl`; none without one."""
    crl = config.tls.client_crl
    if crl is None:
        return Revoked()
    return load_revoked(crl, config.tls.client_ca, f"{config.file}: tls.client_crl")


def restart_keys(running: ServerConfig, new: ServerConfig) -> list[str]:
    """The keys whose new value waits for a restart, as the file names them ("server.listen")."""
    changed = _changed("server.", running, new, skip=_NOT_SERVER_KEYS | LIVE_SERVER_KEYS)
    changed += _changed("tls.", running.tls, new.tls, skip={"client_crl"})
    changed += _changed("server.", running.limits, new.limits)
    changed += _changed("server.keepalive_", running.keepalive, new.keepalive)
    return sorted(set(changed))  # limits repeat server.max_snapshot_bytes


def changes(running: ServerConfig, new: ServerConfig) -> str:
    """What a reload changes, for its log line: "parties +nii; pairings +secom-nii"."""
    parts = [
        added_removed("parties", running.parties, new.parties),
        added_removed("pairings", running.pairings, new.pairings),
    ]
    edited = sorted(
        name
        for kind in ("parties", "pairings")
        for name in getattr(running, kind).keys() & getattr(new, kind).keys()
        if getattr(running, kind)[name] != getattr(new, kind)[name]
    )
    if edited:
        parts.append("changed " + ", ".join(edited))
    if running.tls.client_crl != new.tls.client_crl:
        parts.append("tls.client_crl")
    parts += _changed("server.", running, new, skip=set(fields_of(running)) - LIVE_SERVER_KEYS)
    shown = "; ".join(part for part in parts if part)
    return shown or "no change to parties or pairings"


def _changed(
    prefix: str, old: object, new: object, skip: frozenset[str] | set[str] = frozenset()
) -> list[str]:
    """The fields of two configuration dataclasses that differ, named `prefix` + field, in the
    order they are declared."""
    return [
        f"{prefix}{name}"
        for name in fields_of(old)
        if name not in skip and getattr(old, name) != getattr(new, name)
    ]


def fields_of(config: object) -> list[str]:
    return [f.name for f in fields(config)]  # type: ignore[arg-type]
