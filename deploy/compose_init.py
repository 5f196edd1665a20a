"""One-shot setup of the demo federation for deploy/compose.yaml (not for production).

Writes the demo's TLS CA and certificates, signing keys, SECOM/JPRS data and configurations
into DIR (default /var/lib/invsync/demo) unless DIR/server.toml already exists, with the server
listening on 127.0.0.1:7443 and both agents connecting to localhost:7443 (the agents share the
server's network namespace in compose.yaml, so the demo certificate's name "localhost" holds).

    python deploy/compose_init.py DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

from invsync.server.localfed import PARTIES, agent_config, write_federation

PORT = 7443


def main(argv: list[str]) -> int:
    work = Path(argv[1] if len(argv) > 1 else "/var/lib/invsync/demo")
    if (work / "server.toml").exists():
        print(f"{work}: federation already set up")
        return 0
    work.mkdir(parents=True, exist_ok=True)
    write_federation(work)
    server = work / "server.toml"
    server.write_text(server.read_text().replace('"127.0.0.1:0"', f'"127.0.0.1:{PORT}"'))
    for party in PARTIES:
        text = agent_config(party, PORT).replace(f"127.0.0.1:{PORT}", f"localhost:{PORT}")
        (work / f"{party}.toml").write_text(text)
    print(f"{work}: federation written (server.toml, {', '.join(PARTIES)} agent configs)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
