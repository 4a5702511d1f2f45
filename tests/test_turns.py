"""rs_core/smoothing/turns.py: the device lock hands out turns by time, not by count."""

from __future__ import annotations

import threading
import time

import pytest

from rs_core.smoothing.turns import FairLock


class FakeClock:
    """Seconds that advance only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_owners_with_short_and_long_turns_each_hold_the_lock_about_a_third_of_the_time():
    """Three owners whose turns take 2, 10 and 50 ms (real sleeps: the device is busy, the CPU is not) ask again as
    soon as a turn ends, for 1.2 s: each holds the lock about 0.4 s. Turns by count (a FIFO lock) would give the
    50 ms owner 50/62 of the time; a plain lock gives it to whoever re-takes it first."""
    lock = FairLock()
    held = {}
    end = time.monotonic() + 1.2

    def worker(name: str, step: float) -> None:
        while time.monotonic() < end:
            with lock.turn(name):
                time.sleep(step)
        held[name] = lock.held_s(name)

    threads = [threading.Thread(target=worker, args=(n, s)) for n, s in (("short", 0.002), ("mid", 0.01),
                                                                         ("long", 0.05))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    total = sum(held.values())
    for name, seconds in held.items():
        assert 0.6 * total / 3 <= seconds <= 1.4 * total / 3, (name, held)


def test_a_late_owner_starts_level_and_a_finished_one_is_forgotten():
    clock = FakeClock()
    lock = FairLock(clock)
    with lock.turn("a"):
        clock.now += 5.0
    assert lock.held_s("a") == 5.0 and not lock.locked()
    with lock.turn("b"):  # joins after "a" held 5 s: starts at 5 s, not at 0 (no 5 s monopoly to catch up)
        assert lock.locked()
    assert lock.held_s("b") == 5.0
    lock.forget("a")
    lock.forget("b")
    with lock.turn("c"):
        pass
    assert lock.held_s("c") == 0.0 and lock.held_s("a") == 0.0


def test_the_least_served_waiter_goes_first():
    clock = FakeClock()
    lock = FairLock(clock)
    for name, seconds in (("a", 3.0), ("b", 1.0), ("c", 2.0)):
        with lock.turn(name):
            clock.now += seconds
    order = []
    with lock.turn("holder"):
        waiters = []
        # Held so far: a 3 s; b joined level with a (3 s) and held 1 s more: 4 s; c likewise: 5 s. They arrive
        # in the order c, b, a and go in the order a, b, c.
        for name in ("c", "b", "a"):
            def run(n=name):
                with lock.turn(n):
                    order.append(n)
            t = threading.Thread(target=run)
            t.start()
            waiters.append(t)
            time.sleep(0.05)  # so that each is waiting before the next arrives
    for t in waiters:
        t.join(10)
    assert [lock.held_s(n) for n in "abc"] == [3.0, 4.0, 5.0]
    assert order == ["a", "b", "c"]
