"""The federation CA's signing key: a file on the operator's host, or a command the operator
plugs in for a key that never leaves a hardware module (issue 14).

The key command's contract, which `tls ca init --key-command` records in the CA directory:

- invsync runs it without a shell, as the words it was given (split as a POSIX shell would),
  in the CA directory and with invsync's environment (a PIN the module needs comes from there,
  or from the terminal: stdin is taken);
- its stdin is the exact bytes to sign, DER (a TBSCertificate or a TBSCertList), then end of
  file; invsync sends the message itself, not a digest;
- it signs them with ECDSA over SHA-256 with the CA's key and prints the signature on stdout
  as DER (the ECDSA-Sig-Value SEQUENCE of r and s, as `openssl dgst -sha256 -sign` and
  `pkcs11-tool --signature-format openssl` print it) and nothing else, and exits 0;
- any other exit status is a failure; stderr is for the operator: its last line is quoted in
  the error when the command fails, and not shown otherwise;
- it has `timeout_seconds` (30 unless set at init) to finish; then invsync kills its process
  group and refuses.

Whatever it prints is checked before anything is written: it must be one DER signature that
verifies over the bytes sent with the CA's public key (from ca.pem, or at init the public key
the operator gave). A failure is one KeyCommandError naming the command and what went wrong.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from invsync.agent.errors import InvsyncError

KEY_COMMAND = "key-command.json"
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 600.0  # a module that needs longer is not answering
CURVES = ("secp256r1", "secp384r1")
_SHOWN = 200  # characters of the command's stderr or output quoted in an error


class KeyCommandError(InvsyncError):
    """The CA's key command did not give a signature by the CA's key. The message names the
    command and says what it did instead."""

    hint = (
        "Run the key command by hand on some bytes (`CMD < some.der > sig.der`) and check that "
        "it exits 0 and prints only a DER ECDSA-SHA256 signature by the CA's key; the CA "
        "directory's key-command.json holds the command and its timeout."
    )


class KeyCommandInputError(InvsyncError):
    """A key command, its record or the public key given for it cannot be used as given. The
    message names the option or file."""

    hint = (
        "Give --key-command the command line that signs and --public-key the module's public "
        'key; the CA directory\'s key-command.json records them as {"command": [words], '
        '"timeout_seconds": N}.'
    )


class CaKey(Protocol):
    """What signs for the CA: `sign` gives a DER ECDSA-SHA256 signature of `tbs` that
    verifies with `public`."""

    @property
    def public(self) -> ec.EllipticCurvePublicKey: ...

    def sign(self, tbs: bytes) -> bytes: ...


@dataclass(frozen=True)
class FileKey:
    """The CA key as a private key file (ca.key), read into memory."""

    key: ec.EllipticCurvePrivateKey

    @property
    def public(self) -> ec.EllipticCurvePublicKey:
        return self.key.public_key()

    def sign(self, tbs: bytes) -> bytes:
        return self.key.sign(tbs, ec.ECDSA(hashes.SHA256()))


@dataclass(frozen=True)
class KeyCommand:
    """The key command as recorded: its words and how long it may take."""

    argv: tuple[str, ...]
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def parse(cls, line: str, timeout: float = DEFAULT_TIMEOUT) -> KeyCommand:
        """The command from the line the operator gave; KeyCommandInputError if it has no
        words or its timeout is out of bounds."""
        try:
            argv = tuple(shlex.split(line))
        except ValueError as e:
            raise KeyCommandInputError(
                f"--key-command {line!r}: cannot split it into words ({e})"
            ) from e
        if not argv:
            raise KeyCommandInputError("--key-command is empty: give the command that signs")
        if not _timeout_ok(timeout):
            raise KeyCommandInputError(
                f"--key-timeout must be above 0 and at most {MAX_TIMEOUT:g} seconds, got {timeout}"
            )
        return cls(argv, timeout)

    @property
    def shown(self) -> str:
        return shlex.join(self.argv)

    def record(self) -> str:
        return json.dumps({"command": list(self.argv), "timeout_seconds": self.timeout}) + "\n"


def read_key_command(path: Path) -> KeyCommand:
    """The key command recorded at `path`; KeyCommandInputError naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise KeyCommandInputError(f"{path}: cannot read the key command ({e})") from e
    if not isinstance(data, dict):
        raise KeyCommandInputError(f"{path}: not a JSON object")
    argv, timeout = data.get("command"), data.get("timeout_seconds")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise KeyCommandInputError(
            f'{path}: "command" must be a list of words, the first the program'
        )
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not _timeout_ok(timeout)
    ):
        raise KeyCommandInputError(
            f'{path}: "timeout_seconds" must be above 0 and at most {MAX_TIMEOUT:g}'
        )
    return KeyCommand(tuple(argv), float(timeout))


def _timeout_ok(seconds: float) -> bool:
    return 0 < seconds <= MAX_TIMEOUT  # False for NaN too


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """The CA's public key as the hardware module exported it (PEM or DER SubjectPublicKeyInfo):
    P-256 or P-384; KeyCommandInputError naming the file otherwise."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise KeyCommandInputError(f"{path}: cannot read the public key ({e.strerror})") from e
    try:
        if b"-----BEGIN" in data:
            public = serialization.load_pem_public_key(data)
        else:
            public = serialization.load_der_public_key(data)
    except (ValueError, TypeError) as e:
        raise KeyCommandInputError(f"{path}: not a PEM or DER public key ({e})") from e
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name not in CURVES:
        raise KeyCommandInputError(f"{path}: the CA's key must be an ECDSA P-256 or P-384 key")
    return public


@dataclass(frozen=True)
class CommandKey:
    """The CA key behind a key command; `source` names where `public` was read."""

    command: KeyCommand
    public: ec.EllipticCurvePublicKey
    source: str
    directory: Path

    def sign(self, tbs: bytes) -> bytes:
        out = self._run(tbs)
        try:
            r, s = decode_dss_signature(out)
            exact = encode_dss_signature(r, s) == out
        except ValueError:
            exact = False
        if not exact:
            raise self._error(
                f"printed no DER ECDSA signature ({len(out)} bytes: {_quoted(out)}); it must "
                "print the signature's DER and nothing else"
            )
        try:
            self.public.verify(out, tbs, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise self._error(
                f"signed with another key: its signature does not verify with the CA's public "
                f"key ({self.source})"
            ) from None
        return out

    def _run(self, tbs: bytes) -> bytes:
        try:
            child = subprocess.Popen(
                self.command.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.directory,
                start_new_session=True,  # its own process group: a timeout stops all of it
            )
        except OSError as e:
            raise self._error(f"cannot be run ({e.strerror})") from e
        try:
            out, err = child.communicate(tbs, timeout=self.command.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):  # it ended as the time ran out
                os.killpg(child.pid, signal.SIGKILL)
            # Not communicate(): a helper that left the group (setsid) may hold the pipes open
            # for as long as it lives. Closed here, the command itself is reaped at once.
            for pipe in (child.stdin, child.stdout, child.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            child.wait()
            raise self._error(
                f"gave no signature within {self.command.timeout:g} seconds; it was stopped"
            ) from None
        if child.returncode != 0:
            raise self._error(f"failed ({_status(child.returncode)}){_last_line(err)}")
        return out

    def _error(self, what: str) -> KeyCommandError:
        return KeyCommandError(f"key command `{self.command.shown}` {what}")


def _status(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


def _last_line(err: bytes) -> str:
    """The last line of the command's stderr, control characters escaped: what it prints
    reaches the operator's terminal through our message."""
    lines = err.decode(errors="replace").strip().splitlines()
    if not lines:
        return ""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in lines[-1][:_SHOWN])
    return f": {shown}"


def _quoted(out: bytes) -> str:
    if not out:
        return "nothing"
    return repr(out[:_SHOWN].decode()) if out.isascii() else f"starting {out[:16].hex()}"
