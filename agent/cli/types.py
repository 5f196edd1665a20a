"""Parameter types several commands share."""

from __future__ import annotations

from datetime import UTC, datetime

import click


class RfcTime(click.ParamType):  # type: ignore[type-arg]
    """An RFC 3339 time; one without a zone is taken as UTC."""

    name = "TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is not an RFC 3339 time such as 2021-03-10T00:00:00Z", param, ctx)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed
