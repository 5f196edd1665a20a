"""The cycle collector paused over large work, and run once when the last pause ends."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import tomllib
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from invsync.agent import gc_pause
from invsync.agent.cli import agent as agent_cli
from invsync.agent.config.settings import AgentConfig
from invsync.agent.daemon.cycle import Agent
from invsync.agent.gc_pause import collector_paused
from invsync.server.cli import main
from tests.paths import DEMO, ROOT


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    """A reference cycle nobody holds, which only the cycle collector frees."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_the_collector_is_off_within_and_collects_what_was_left_at_the_end() -> None:
    with collector_paused():
        assert not gc.isenabled()
        garbage = _cycle()
        for _ in range(100_000):  # far past every generation's allocation threshold
            _Node()
        assert garbage() is not None
    assert gc.isenabled()
    assert garbage() is None


def test_a_daemons_pause_freezes_what_it_keeps_and_collects_it_all_now_and_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What is alive at the end of a daemon's cycle is frozen, a reference cycle it made and
    dropped too, so no collection scans it; every FULL_EVERY-th pause collects everything:
    both the cycle dropped in the first pause and one among what was kept, dropped later."""
    monkeypatch.setattr(gc_pause, "_kept", 0)
    monkeypatch.setattr(gc_pause, "_process_ends_with_command", True)  # the console script's
    try:
        with collector_paused(keeping=True):
            made_and_dropped = _cycle()
            kept = _Node()
            kept.other = _Node()
            kept.other.other = kept
        assert made_and_dropped() is not None
        assert gc.get_freeze_count() > 0
        frozen = weakref.ref(kept)
        del kept  # now a reference cycle nobody holds, among what was frozen
        for _ in range(gc_pause.FULL_EVERY - 2):
            with collector_paused(keeping=True):
                pass
            assert frozen() is not None and made_and_dropped() is not None
        with collector_paused(keeping=True):
            pass
        assert frozen() is None and made_and_dropped() is None
    finally:
        gc.unfreeze()


def test_a_daemons_pause_in_a_tests_process_freezes_nothing() -> None:
    with collector_paused(keeping=True):
        garbage = _cycle()
    assert gc.get_freeze_count() == 0
    assert garbage() is None


def test_pauses_nest_and_the_last_one_ends_it() -> None:
    with collector_paused():
        with collector_paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_error_ends_the_pause_too() -> None:
    with pytest.raises(RuntimeError, match="boom"), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_collector_the_caller_disabled_stays_disabled() -> None:
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_pauses_overlapping_across_threads_end_with_the_last() -> None:
    entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with collector_paused():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    with collector_paused():
        thread.start()
        assert entered.wait(10)
    assert not gc.isenabled()  # the other thread's pause still holds
    release.set()
    thread.join(10)
    assert gc.isenabled()


def test_a_one_shot_pause_outside_the_console_entry_point_collects_as_before() -> None:
    # A test (or any caller) running a command in its own process: nothing is frozen.
    with collector_paused(exiting=True):
        garbage = _cycle()
    assert gc.get_freeze_count() == 0
    assert garbage() is None


_ONE_SHOT = """
import gc, weakref
from invsync.agent.gc_pause import collector_paused, ends_with_command

class Node:
    other = None

def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)

ends_with_command()
with collector_paused():
    pass
print("after a pause:", gc.get_freeze_count(), gc.isenabled())
with collector_paused(exiting=True):
    garbage = cycle()
    kept = [Node() for _ in range(1000)]
print("after the last:", gc.get_freeze_count() >= 1000, gc.isenabled(), garbage() is not None)
"""


def test_the_last_pause_of_a_one_shot_command_freezes_instead_of_collecting() -> None:
    # In its own process: a frozen interpreter must not be this test run's.
    done = subprocess.run(
        [sys.executable, "-c", _ONE_SHOT], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "after a pause: 0 True",  # without `exiting`, a pause collects as always
        "after the last: True True True",  # frozen, collector back on, the cycle not freed
    ]


def test_the_command_group_run_inside_another_process_does_not_end_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # server.cli.main is what tests call in their process; only the console script's
    # `console` says the process ends with the command.
    monkeypatch.setattr(sys, "argv", ["invsync", "--help"])
    with pytest.raises(SystemExit):
        main()
    with collector_paused(exiting=True):
        garbage = _cycle()
    assert gc.get_freeze_count() == 0
    assert garbage() is None


# The wiring, each in a process of its own: `console` says the process ends with its command,
# it is the console script, and the one-shot commands pause with `exiting`.
_FROZEN_AT_EXIT = """
import atexit, gc, runpy, sys
atexit.register(lambda: print("frozen:", gc.get_freeze_count() > 0))
sys.argv = ["invsync", *sys.argv[1:]]
runpy.run_module("invsync.server.cli", run_name="__main__")
"""


def _frozen_at_exit(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _FROZEN_AT_EXIT, *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return done.stdout.splitlines()[-1:]


def test_reconcile_run_as_the_console_script_freezes_at_its_end() -> None:
    pem = str(DEMO / "jprs_ca_certificates.pem")
    assert _frozen_at_exit("reconcile", "--root", pem, "--subordinate", pem) == ["frozen: True"]


def test_inventory_import_run_as_the_console_script_freezes_at_its_end(tmp_path: Path) -> None:
    db, pem = str(tmp_path / "agent.db"), str(DEMO / "secom_roots.pem")
    assert _frozen_at_exit("inventory", "import", "--db", db, pem) == ["frozen: True"]


def test_a_command_that_does_not_end_its_process_there_does_not_freeze() -> None:
    assert _frozen_at_exit("rules") == ["frozen: False"]


def test_the_console_script_is_console() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"invsync": "invsync.server.cli:console"}


def test_agent_run_once_pauses_as_exiting_and_the_daemon_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[bool] = []

    def cycle(agent: object, wait: float, *, exiting: bool = False) -> list[object]:
        seen.append(exiting)
        return []

    class NoAgent:  # the cycle is replaced: nothing of an agent is used but its close
        def __init__(self, config: object, *, keeps: bool = True) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(agent_cli, "_cycle", cycle)
    monkeypatch.setattr(agent_cli, "Agent", NoAgent)
    agent_cli._run_once(cast(AgentConfig, None), 1.0)
    agent_cli._cycle_logged(cast(Agent, None), 1.0)
    assert seen == [True, False]
