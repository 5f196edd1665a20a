"""The agent daemon: one cycle (collect, push when due, co-sign), its key rotation, freshness and
the report check before co-signing."""
