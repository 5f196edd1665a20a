"""The agent: everything a party needs on its own host, including what the exchange server
reuses (DESIGN §2). Subpackages in dependency order are listed in docs/architecture.md."""
