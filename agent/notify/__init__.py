"""Notifications of the agent (issue 15): events from its reports and cycles, sent on the
channels of `[[notify]]` through an outbox in its database."""
