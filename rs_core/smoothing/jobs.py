"""Sampling jobs in background threads, run by one server-wide :class:`Scheduler` (the app's live views).

A :class:`Job` drives a *live stream* — any object following :class:`LiveStream`:
:class:`~rs_core.smoothing.stream.CertifyStream`, :class:`~rs_core.dual.smooth.DualStream`,
:class:`~rs_core.smoothing.sweep.SigmaSweepStream` — in its own thread and publishes the
latest snapshot; a user interface reads it whenever it likes and never blocks
on sampling. Nothing here touches a user interface, so it is tested like the
rest of ``rs_core``.

The :class:`Scheduler` is the one owner of the device locks and of the job
slots:

* each batch runs under the lock of its device, so the jobs of several browser
  sessions interleave batch by batch on one device (each with its own
  generator, so results do not depend on the interleaving) instead of
  contending for its memory; the lock is a :class:`~rs_core.smoothing.turns.FairLock`,
  whose turns go by time: with k jobs on a device each holds it about 1/k of
  the time, whatever its batches take;
* at most ``max_running`` jobs sample at once; later ones wait in a FIFO queue
  whose order anyone can read (:meth:`Scheduler.position`);
* a job submitted with an ``alive`` callback (the app passes "is this browser
  session still connected?") is cancelled once that has been false for
  ``grace_s`` seconds: a closed or reloaded tab ends its run.

>>> from torch import nn
>>> from rs_core import CertifyStream
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
>>> scheduler = Scheduler(max_running=2)
>>> stream = scheduler.exclusive("cpu", lambda: CertifyStream(model, torch.zeros(1, 2, 2), sigma=0.25, n_max=2000,
...                                                           batch_size=500, seed=0))
>>> job = scheduler.submit(stream)
>>> job.wait(timeout=30)
True
>>> job.certificate.n, job.certificate.stop_reason
(2000, 'n_max')
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import torch

from rs_core.smoothing.results import Snapshot
from rs_core.smoothing.turns import FairLock

T = TypeVar("T")
JobState = Literal["queued", "running", "done"]
DEFAULT_MAX_RUNNING = 4
MAX_JOBS_ENV = "RS_LAB_MAX_JOBS"


@runtime_checkable
class LiveSnapshot(Protocol):
    """What a live stream yields after each batch: which stage of how many, and that stage's CERTIFY snapshot.

    ``inner`` is the :class:`~rs_core.smoothing.results.Snapshot` of the CERTIFY being sampled (a plain
    CertifyStream's snapshot is its own ``inner``, stage 1 of 1); ``label`` says what that stage
    certifies ("" for a plain CERTIFY, "σ-estimator", "σ = 0.25", …).
    """

    @property
    def stage(self) -> int: ...

    @property
    def stages(self) -> int: ...

    @property
    def inner(self) -> Snapshot: ...

    @property
    def label(self) -> str: ...


@runtime_checkable
class LiveStream(Protocol):
    """A stoppable sampling run that a :class:`Job` drives: iterate it for snapshots, stop it from any
    thread (it ends within one batch), read its certificate at any time (valid when stopped)."""

    alpha: float
    n0: int
    n_max: int

    @property
    def seed(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    def __iter__(self) -> Iterator[LiveSnapshot]: ...

    def stop(self) -> None: ...

    def certificate(self) -> Any: ...


@dataclass(frozen=True)
class Progress:
    """One point of the running bound: after ``n`` estimation samples of stage ``stage``."""

    n: int
    p_lower: float
    radius: float
    elapsed_s: float
    stage: int = 1


def device_key(device: str | torch.device) -> str:
    """"cuda" and "cuda:0" are one card; all CPU inference is one device (it already uses every core)."""
    dev = torch.device(device)
    return dev.type if dev.type == "cpu" else f"{dev.type}:{dev.index or 0}"


def _max_running_from_env() -> int:
    raw = os.environ.get(MAX_JOBS_ENV)
    if raw is None:
        return DEFAULT_MAX_RUNNING
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_JOBS_ENV}: must be a whole number ≥ 1, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{MAX_JOBS_ENV}: must be a whole number ≥ 1, got {raw!r}")
    return value


class Job:
    """One stream run by a :class:`Scheduler`; poll :attr:`snapshot`, :attr:`state`, :attr:`done`.

    :meth:`stop` ends sampling after the batch in flight (a queued job ends at once), and the
    certificate is then the stream's anytime-valid one. ``predict`` (optional) runs once after the
    stream ends *on its own*, never after a stop or a cancel, so a stop costs at most the batch in
    flight. An exception inside the thread is kept in :attr:`error` instead of being lost.
    ``cancelled`` says why the scheduler ended the job, if it did (e.g. "the session ended").
    """

    def __init__(self, stream: LiveStream, scheduler: Scheduler, *, predict: Callable[[], Any] | None = None,
                 owner: str | None = None, alive: Callable[[], bool] | None = None) -> None:
        self.stream = stream
        self.owner = owner
        self._scheduler = scheduler
        self._predict = predict
        self._alive = alive
        self._dead_since: float | None = None
        self._device = device_key(stream.device)
        self._thread = threading.Thread(target=self._run, name="rs-job", daemon=True)
        self._done = threading.Event()
        self._first_votes = threading.Event()
        self.state: JobState = "queued"
        self.submitted_at = time.monotonic()
        self.started_at: float | None = None
        self.snapshot: LiveSnapshot | None = None
        self.history: list[Progress] = []
        self.certificate: Any = None
        self.prediction: Any = None
        self.error: BaseException | None = None
        self.cancelled: str | None = None
        self.batches = 0

    # -- read by user interfaces -------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def queued(self) -> bool:
        return self.state == "queued"

    @property
    def running(self) -> bool:
        return self.state == "running"

    def position(self) -> int | None:
        """1-based place in the scheduler's queue, None unless queued."""
        return self._scheduler.position(self)

    def stop(self) -> None:
        """Ask sampling to end after the batch in flight (any thread); a queued job ends at once."""
        self.stream.stop()
        self._scheduler._drop_queued(self)

    def wait_for_votes(self, timeout: float | None = None) -> bool:
        """Blocks until the first estimation batch is counted (or the job ended); False on timeout.

        A live view calls this right after submitting so that its first frame already shows votes.
        """
        return self._first_votes.wait(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the job is done; True unless ``timeout`` passed first."""
        return self._done.wait(timeout)

    # -- driven by the scheduler -------------------------------------------------------------------
    def _cancel(self, why: str) -> None:
        self.cancelled = why
        self.stop()

    def _finish_unstarted(self) -> None:
        """A queued job that was stopped or cancelled: no sample drawn, the stream's (abstaining) certificate."""
        self.certificate = self.stream.certificate()
        self.state = "done"
        self._first_votes.set()
        self._done.set()

    def _launch(self) -> None:
        self.state = "running"
        self.started_at = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        lock = self._scheduler._lock(self._device)
        stopped = False
        try:
            batches = iter(self.stream)
            while True:
                with lock.turn(self):
                    snap = next(batches, None)
                if snap is None:
                    break
                self.batches += 1
                self.snapshot = snap
                inner = snap.inner
                if inner.phase == "estimation":
                    self.history.append(Progress(inner.n, inner.p_lower, inner.radius, inner.elapsed_s, snap.stage))
                    self._first_votes.set()
                stopped = stopped or inner.stop_reason == "stopped"
            self.certificate = self.stream.certificate()
            if self._predict is not None and not stopped and self.cancelled is None:
                with lock.turn(self):
                    self.prediction = self._predict()
        except BaseException as err:  # noqa: BLE001 — reported to the polling side
            self.error = err
        finally:
            lock.forget(self)
            self.state = "done"
            self._first_votes.set()
            self._done.set()
            self._scheduler._finished(self)


class Scheduler:
    """Runs :class:`Job`\\ s: one lock per device, at most ``max_running`` sampling at once (the rest queue, FIFO),
    and jobs of ended sessions cancelled.

    ``max_running``: None reads ``RS_LAB_MAX_JOBS`` (default 4). ``grace_s``: how long an ``alive``
    callback must say False before its job is cancelled (a network blip reconnects within it);
    ``watch_s``: how often the callbacks are asked.
    """

    def __init__(self, max_running: int | None = None, *, grace_s: float = 2.0, watch_s: float = 0.5) -> None:
        if max_running is None:
            max_running = _max_running_from_env()
        if isinstance(max_running, bool) or not isinstance(max_running, int) or max_running < 1:
            raise ValueError(f"max_running: must be an int ≥ 1, got {max_running!r}")
        for name, value in (("grace_s", grace_s), ("watch_s", watch_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value > 3600:
                raise ValueError(f"{name}: must be a number of seconds in (0, 3600], got {value!r}")
        self.max_running = max_running
        self.grace_s, self.watch_s = float(grace_s), float(watch_s)
        self._guard = threading.Lock()
        self._locks: dict[str, FairLock] = {}
        self._queue: deque[Job] = deque()
        self._running: set[Job] = set()
        self._watched: set[Job] = set()
        self._watcher: threading.Thread | None = None

    # -- devices -----------------------------------------------------------------------------------
    def _lock(self, device: str | torch.device) -> FairLock:
        with self._guard:
            return self._locks.setdefault(device_key(device), FairLock())

    def exclusive(self, device: str | torch.device, fn: Callable[[], T]) -> T:
        """Runs ``fn`` now, in this thread, holding ``device``'s lock between two batches of the running jobs:
        for short model calls outside a job (a stream constructor's shape probe, one PREDICT)."""
        lock, owner = self._lock(device), object()
        try:
            with lock.turn(owner):
                return fn()
        finally:
            lock.forget(owner)

    # -- jobs --------------------------------------------------------------------------------------
    def submit(self, stream: LiveStream, *, predict: Callable[[], Any] | None = None, owner: str | None = None,
               alive: Callable[[], bool] | None = None) -> Job:
        """Queues ``stream`` as a job and starts it when a slot is free (at once if one is).

        ``owner``: who the job belongs to (a session id), for :meth:`cancel_owner`; ``alive``: called every
        ``watch_s`` from a watcher thread; the job is cancelled once it has returned False for ``grace_s``.
        """
        if not isinstance(stream, LiveStream):
            raise ValueError(f"stream: must follow the LiveStream protocol, got {type(stream).__name__}")
        job = Job(stream, self, predict=predict, owner=owner, alive=alive)
        with self._guard:
            self._queue.append(job)
            if alive is not None:
                self._watched.add(job)
                if self._watcher is None:
                    self._watcher = threading.Thread(target=self._watch, name="rs-job-watcher", daemon=True)
                    self._watcher.start()
        self._dispatch()
        return job

    def position(self, job: Job) -> int | None:
        with self._guard:
            try:
                return self._queue.index(job) + 1
            except ValueError:
                return None

    @property
    def running(self) -> int:
        with self._guard:
            return len(self._running)

    @property
    def queued(self) -> int:
        with self._guard:
            return len(self._queue)

    def cancel_owner(self, owner: str, why: str = "cancelled") -> int:
        """Cancels every unfinished job of ``owner``; returns how many."""
        with self._guard:
            jobs = [j for j in (*self._queue, *self._running) if j.owner == owner]
        for job in jobs:
            job._cancel(why)
        return len(jobs)

    def _dispatch(self) -> None:
        with self._guard:
            starting = []
            while self._queue and len(self._running) < self.max_running:
                job = self._queue.popleft()
                self._running.add(job)
                starting.append(job)
        for job in starting:
            job._launch()

    def _drop_queued(self, job: Job) -> None:
        with self._guard:
            try:
                self._queue.remove(job)
            except ValueError:
                return
            self._watched.discard(job)
        job._finish_unstarted()

    def _finished(self, job: Job) -> None:
        with self._guard:
            self._running.discard(job)
            self._watched.discard(job)
        self._dispatch()

    def _watch(self) -> None:
        while True:
            time.sleep(self.watch_s)
            with self._guard:
                watched = list(self._watched)
            now = time.monotonic()
            for job in watched:
                try:
                    alive = bool(job._alive())
                except Exception:  # noqa: BLE001 — a broken callback must not kill the watcher
                    alive = True
                if alive:
                    job._dead_since = None
                elif job._dead_since is None:
                    job._dead_since = now
                elif now - job._dead_since >= self.grace_s and job.cancelled is None:
                    job._cancel("the session ended")


_DEFAULT: Scheduler | None = None
_DEFAULT_GUARD = threading.Lock()


def default_scheduler() -> Scheduler:
    """The process-wide scheduler (the app's), created on first use with ``RS_LAB_MAX_JOBS`` slots."""
    global _DEFAULT
    with _DEFAULT_GUARD:
        if _DEFAULT is None:
            _DEFAULT = Scheduler()
        return _DEFAULT


__all__ = ["Job", "LiveSnapshot", "LiveStream", "Progress", "Scheduler", "default_scheduler", "device_key"]
