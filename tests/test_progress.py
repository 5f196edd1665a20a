"""Progress is drawn on a terminal, and nowhere else."""

from __future__ import annotations

import io

from invsync.agent.telemetry.progress import terminal_progress
from tests.terminal import Tty


def test_a_terminal_sees_the_count_and_the_final_line() -> None:
    out = Tty()
    show = terminal_progress("reading", out)
    show(500, None)
    show(10_229, 10_229)
    assert out.getvalue() == "\rreading: 500\rreading: 10229/10229\n"


def test_a_pipe_sees_nothing() -> None:
    out = io.StringIO()
    show = terminal_progress("reading", out)
    show(500, 1000)
    show(1000, 1000)
    assert out.getvalue() == ""
