"""Reports off the push (server/report_worker.py): requests coalesce, a failure is logged and
the worker goes on, and a stop makes what is still asked for."""

from __future__ import annotations

import logging
import threading
import time

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


class Flaky:
    """Fails its first `failures` calls, then makes the report; records when each call came."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[float] = []
        self.made = threading.Event()

    def __call__(self, pairing: str) -> None:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.failures:
            raise RuntimeError("database is locked")
        self.made.set()


def test_a_failed_report_is_asked_for_again_after_a_wait_that_doubles(
    caplog: pytest.LogCaptureFixture,
) -> None:
    maker = Flaky(failures=2)
    worker = ReportWorker(maker, retry_first_seconds=0.2)
    with caplog.at_level(logging.WARNING, "invsync.server"):
        worker.start(["a"])
        assert maker.made.wait(10)
    worker.stop()
    first, second = maker.calls[1] - maker.calls[0], maker.calls[2] - maker.calls[1]
    assert len(maker.calls) == 3
    assert 0.2 <= first < 1.0 and 0.4 <= second < 1.5
    assert "report of pairing=a asked for again in 0.2 s" in caplog.messages


def test_a_stop_leaves_a_failed_report_to_the_next_start() -> None:
    maker = Flaky(failures=1)
    worker = ReportWorker(maker, retry_first_seconds=30)
    worker.start(["a"])
    assert worker.idle(10)
    started = time.monotonic()
    worker.stop()
    assert time.monotonic() - started < 5  # not waiting out the retry
    assert len(maker.calls) == 1 and not maker.made.is_set()


def test_a_new_request_starts_a_failed_reports_wait_anew() -> None:
    maker = Flaky(failures=2)
    worker = ReportWorker(maker, retry_first_seconds=1.0)
    worker.start(["a"])
    assert worker.idle(10)  # failed once: asked for again in 1 s, then in 2 s
    worker.request("a")  # a push: made now, and it fails again
    assert maker.made.wait(10)
    worker.stop()
    again = maker.calls[2] - maker.calls[1]
    assert 0.9 <= again < 1.8  # the first wait again, not the doubled one
