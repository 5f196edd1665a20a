"""SignalWaiter: a daemon's main thread hears its signals even when another thread takes them."""

from __future__ import annotations

import os
import signal
import threading
import time

from invsync.agent.daemon.signals import SignalWaiter


def _send_later(signum: signal.Signals, delay: float = 0.1) -> threading.Thread:
    def send() -> None:
        time.sleep(delay)
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_a_signal_taken_by_another_thread_still_wakes_the_waiter() -> None:
    # With the main thread blocking SIGUSR1, the kernel must deliver it to the sending thread:
    # the case in which a main thread asleep on a threading.Event never hears of it.
    # (A thread inherits its creator's mask: the sender starts before the main thread blocks.)
    with SignalWaiter([signal.SIGUSR1]) as waiter:
        sender = _send_later(signal.SIGUSR1, 0.3)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
        try:
            started = time.monotonic()
            got = waiter.wait(10)
            sender.join()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR1])
    assert got == {signal.SIGUSR1}
    assert time.monotonic() - started < 5


def test_a_timeout_returns_no_signal() -> None:
    with SignalWaiter([signal.SIGUSR1]) as waiter:
        assert waiter.wait(0.05) == set()


def test_another_signal_does_not_end_the_wait_and_handlers_are_restored() -> None:
    heard: list[int] = []
    before = signal.signal(signal.SIGUSR2, lambda signum, frame: heard.append(signum))
    try:
        with SignalWaiter([signal.SIGUSR1]) as waiter:
            other = _send_later(signal.SIGUSR2, 0.05)
            ours = _send_later(signal.SIGUSR1, 0.3)
            assert waiter.wait(10) == {signal.SIGUSR1}
            other.join()
            ours.join()
        assert heard == [signal.SIGUSR2]
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGUSR2, before)
