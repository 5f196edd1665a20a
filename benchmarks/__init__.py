"""The project's benchmarks (README.md): scripts run as files, importable for their helpers."""
