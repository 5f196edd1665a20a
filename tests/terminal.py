"""A stand-in for an interactive terminal, for code that writes differently to one."""

from __future__ import annotations

import io


class Tty(io.StringIO):
    """A text buffer that says it is a terminal."""

    def isatty(self) -> bool:
        return True
