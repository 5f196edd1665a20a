"""What the agent tells its operator while it works: log lines, Prometheus metrics, progress."""
