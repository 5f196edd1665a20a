"""The `invsync` commands an agent host needs; `invsync.server.cli` adds the server's and is the
entry point."""
