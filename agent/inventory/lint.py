"""CA certificates checked against the CA/Browser Forum TLS Baseline Requirements by pkilint.

Opt-in (`pip install 'invsync[lint]'`): a maintained linter follows the Baseline Requirements'
certificate profiles release by release, which hand-written profile checks would have to chase.
pkilint checks against the current requirements; only those it knows an effective date for are
skipped for certificates issued before it, so a finding on an old CA certificate may be a rule
that came later (the output shows each certificate's notBefore).

The results stay local to the party that runs `invsync inventory lint`: they are not a rule of
the signed report, because the server and both agents must rebuild a report byte for byte, and a
linter's findings change with its version.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from invsync.agent.errors import InvsyncError

# pkilint's severities, most severe first; FATAL means it could not go on checking.
SEVERITIES = ("FATAL", "ERROR", "WARNING", "NOTICE", "INFO")


class LintUnavailable(InvsyncError):
    hint = "Install the opt-in linter: pip install 'invsync[lint]' (pkilint)."


@dataclass(frozen=True)
class LintFinding:
    """One finding of pkilint: its severity, code, the certificate field (`where`) it is about."""

    severity: str
    code: str
    where: str
    message: str

    @property
    def rank(self) -> int:
        return SEVERITIES.index(self.severity)


@dataclass(frozen=True)
class LintResult:
    """The findings for one certificate, most severe first; `kind` is pkilint's certificate
    type (ROOT_CA, INTERNAL_UNCONSTRAINED_TLS_CA, ...)."""

    sha256: str
    kind: str
    findings: tuple[LintFinding, ...]

    def at_least(self, severity: str) -> tuple[LintFinding, ...]:
        return tuple(f for f in self.findings if f.rank <= SEVERITIES.index(severity))


def _modules() -> dict[str, ModuleType]:
    names = ("loader", "finding_filter", "cabf.serverauth", "pkix.certificate")
    try:
        return {name: importlib.import_module(f"pkilint.{name}") for name in names}
    except ImportError as e:
        raise LintUnavailable(f"pkilint is not installed ({e})") from e


def linter_version() -> str:
    _modules()
    return importlib.metadata.version("pkilint")


def lint_certificate(der: bytes, sha256: str) -> LintResult:
    """pkilint's CA/B Forum TLS BR findings for one certificate, its type detected as the
    linter's `--detect` does. A certificate the linter cannot decode or check is one FATAL
    finding, so that one odd certificate does not stop the others from being checked."""
    m = _modules()
    try:
        document = m["loader"].RFC5280CertificateDocumentLoader().load_der_document(der, sha256)
        serverauth = m["cabf.serverauth"]
        kind = serverauth.determine_certificate_type(document)
        validator = m["pkix.certificate"].create_pkix_certificate_validator_container(
            serverauth.create_decoding_validators(), serverauth.create_validators(kind)
        )
        results = validator.validate(document.root)
        results, _ = m["finding_filter"].filter_results(
            serverauth.create_serverauth_finding_filters(kind), results
        )
    # The linter is foreign code fed attacker-controlled bytes: any failure of it is a finding.
    except Exception as e:
        return LintResult(sha256, "UNKNOWN", (_crashed(e),))
    return LintResult(sha256, str(kind.name), _findings(results))


def _crashed(error: Exception) -> LintFinding:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return LintFinding("FATAL", "invsync.lint_failed", "certificate", f"pkilint: {text[:200]}")


def _findings(results: list[Any]) -> tuple[LintFinding, ...]:
    found = [
        LintFinding(
            str(fd.finding.severity.name),
            str(fd.finding.code),
            str(result.node.path),
            str(fd.message or ""),
        )
        for result in results
        for fd in result.finding_descriptions
    ]
    return tuple(sorted(found, key=lambda f: (f.rank, f.code, f.where)))
