"""SQLite storage (DESIGN §9): opening a database, the one-daemon lock, and the agent's store."""
