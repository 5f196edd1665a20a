"""Property/fuzz tests over every reader of outside input (issue 12); see docs/testing.md."""
