"""The exchange server: a thin layer over the agent's model, exchange, reconcile and report
packages, with its own store, schedule, gRPC service and daemon."""
