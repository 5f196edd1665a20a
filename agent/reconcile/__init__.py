"""Reconciliation (DESIGN §7): the runner and one module per rule in `rules/`."""
