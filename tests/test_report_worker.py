"""Reports off the push (server/report_worker.py): requests coalesce, a failure is logged and
the worker goes on, and a stop makes what is still asked for."""

from __future__ import annotations

import logging
import threading

import pytest

from invsync.server.report_worker import ReportWorker


class Maker:
    """Records the pairings reconciled; blocks on `gate` until a test lets it go on."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self.gate = threading.Event()
        self.started = threading.Event()

    def __call__(self, pairing: str) -> None:
        self.started.set()
        self.gate.wait(10)
        if pairing == "broken":
            raise RuntimeError("the store is gone")
        self.made.append(pairing)


def test_requests_for_one_pairing_while_it_waits_are_made_once() -> None:
    maker = Maker()
    worker = ReportWorker(maker)
    worker.start(["a"])
    assert maker.started.wait(10)  # "a" is being made; the next three wait
    for pairing in ("b", "b", "a"):
        worker.request(pairing)
    maker.gate.set()
    assert worker.idle(10)
    worker.stop()
    assert maker.made == ["a", "b", "a"]


def test_a_failed_report_is_logged_and_the_next_one_made(
    caplog: pytest.LogCaptureFixture,
) -> None:
    maker = Maker()
    maker.gate.set()
    worker = ReportWorker(maker)
    with caplog.at_level(logging.ERROR, "invsync.server"):
        worker.start(["broken", "a"])
        assert worker.idle(10)
    worker.stop()
    assert maker.made == ["a"]
    assert "reconciling pairing=broken failed" in caplog.messages


def test_a_stop_makes_what_is_still_asked_for() -> None:
    maker = Maker()
    worker = ReportWorker(maker)
    worker.start(["a"])
    assert maker.started.wait(10)
    worker.request("b")
    threading.Timer(0.2, maker.gate.set).start()
    worker.stop()
    assert maker.made == ["a", "b"]
