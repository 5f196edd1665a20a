"""A stand-in for a hardware module's signing tool, run by tests as a federation CA's key
command (agent.exchange.ca_key): `hsm_signer.py MODE KEY [LOG]`.

`sign` keeps the contract as `openssl dgst -sha256 -sign KEY` would: the bytes on stdin signed
with ECDSA over SHA-256 by the key in file KEY, the DER signature on stdout, exit 0; with LOG,
a line is appended to it for each signature, so a test can count what the module signed. Each
other mode breaks the contract one way: `fail` (exit 3, a reason on stderr), `garbage` (text
instead of a signature), `slow` (sign after 0.5 s: calls overlap unless something orders
them), `hang` (never answers; it must be stopped), `escape` (a reason on stderr that would
clear the operator's terminal), `detach` (hangs, and leaves a helper of its own session holding
its output open for 15 s, as a PKCS#11 daemon might).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def main(mode: str, key_path: str, log: str | None = None) -> int:
    data = sys.stdin.buffer.read()
    if mode == "fail":
        print("C_Login: CKR_PIN_INCORRECT", file=sys.stderr)
        return 3
    if mode == "escape":
        print("\x1b[2JC_Login failed", file=sys.stderr)
        return 3
    if mode == "detach":
        helper = [sys.executable, "-c", "import time; time.sleep(15)"]
        subprocess.Popen(helper, start_new_session=True)  # inherits stdout and stderr
        time.sleep(60)
    if mode == "garbage":
        sys.stdout.write("signed!\n")
        return 0
    if mode == "hang":
        time.sleep(60)
    if mode == "slow":
        time.sleep(0.5)
    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    sys.stdout.buffer.write(key.sign(data, ec.ECDSA(hashes.SHA256())))
    if log:
        with open(log, "a") as out:
            out.write(f"signed {len(data)} bytes\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
