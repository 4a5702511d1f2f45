"""Turns on a device by time: the lock the scheduler's jobs take around each batch, handed out fairly.

A plain ``threading.Lock`` is not fair: the thread that releases it is running and usually takes it again before a
waiting thread wakes, and a job with long batches gets as many turns as one with short batches — so with k jobs on
one device a job's share of the device depends on the others' batch sizes and on luck. :class:`FairLock` gives the
next turn to the waiting owner that has held the device least (ties: the one that has waited longest), so over any
stretch where k owners keep asking, each holds it about 1/k of the time whatever its batches take. An owner joining
late starts level with the least-served one, not at zero (it does not get a monopoly until it "catches up").

>>> lock = FairLock()
>>> with lock.turn("a"):
...     pass
>>> lock.held_s("a") >= 0.0
True
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager


class FairLock:
    """A mutex whose turns go to the waiting owner with the least held time (see the module docstring).

    ``clock``: seconds (default ``time.monotonic``), what held time is measured with.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._holder: Hashable | None = None
        self._held: dict[Hashable, float] = {}  # owner → seconds held since it first asked (while it is known)
        self._waiting: list[Hashable] = []  # in arrival order

    @contextmanager
    def turn(self, owner: Hashable) -> Iterator[None]:
        """Holds the lock for ``owner``: waits until no one holds it and ``owner`` is the least-served waiter."""
        with self._cond:
            if owner not in self._held:
                self._held[owner] = min(self._held.values(), default=0.0)
            self._waiting.append(owner)
            while self._holder is not None or self._next() != owner:
                self._cond.wait()
            self._waiting.remove(owner)
            self._holder = owner
        start = self._clock()
        try:
            yield
        finally:
            with self._cond:
                if owner in self._held:
                    self._held[owner] += self._clock() - start
                self._holder = None
                self._cond.notify_all()

    def forget(self, owner: Hashable) -> None:
        """``owner`` will ask no more (a job ended): its held time no longer sets newcomers' start."""
        with self._cond:
            if owner not in self._waiting and owner != self._holder:
                self._held.pop(owner, None)

    def locked(self) -> bool:
        """Whether someone holds it now."""
        with self._cond:
            return self._holder is not None

    def held_s(self, owner: Hashable) -> float:
        """Seconds ``owner`` has held the lock (0 for an owner never seen or forgotten)."""
        with self._cond:
            return self._held.get(owner, 0.0)

    def _next(self) -> Hashable:
        return min(self._waiting, key=lambda o: (self._held[o], self._waiting.index(o)))


__all__ = ["FairLock"]
