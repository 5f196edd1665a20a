"""Evidence bundles of the exchange's transparency log: export, offline verification, timeline
and summaries for auditors (docs/evidence.md)."""
