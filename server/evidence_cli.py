"""`invsync evidence`: the agent's evidence commands, with the export that reads the exchange
server's own database (the server side of the tree may import the agent's, not the reverse)."""

from __future__ import annotations

from invsync.agent.cli.evidence import evidence_group
from invsync.server.evidence_export import export_from_server

evidence_command = evidence_group(server_export=export_from_server)
