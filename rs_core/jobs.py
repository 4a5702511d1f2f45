"""CERTIFY in a background thread, for live views that poll it (the app's Certify page).

A :class:`CertifyJob` drives a :class:`~rs_core.certify.CertifyStream` in its own
thread and publishes the latest :class:`~rs_core.certify.Snapshot`; a user
interface reads it whenever it likes and never blocks on sampling. The job never
touches any user interface, so it is tested like the rest of ``rs_core``.

Each batch runs under a per-device lock (:func:`inference_lock`), so several jobs
(several browser sessions) interleave batch by batch on one GPU instead of
contending for its memory; each job has its own generator, so results do not
depend on the interleaving.

>>> from torch import nn
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
>>> job = CertifyJob(CertifyStream(model, torch.zeros(1, 2, 2), sigma=0.25, n_max=2000, batch_size=500, seed=0))
>>> job.start().wait(timeout=30)
True
>>> job.certificate.n, job.certificate.stop_reason
(2000, 'n_max')
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .certify import Certificate, CertifyStream, Prediction, Snapshot

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def inference_lock(device: str | torch.device) -> threading.Lock:
    """The process-wide lock for inference on ``device`` (one per device type and index)."""
    dev = torch.device(device)
    # "cuda" and "cuda:0" are one card; CPU inference is serialized too (it already uses every core).
    key = dev.type if dev.type == "cpu" else f"{dev.type}:{dev.index or 0}"
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


@dataclass(frozen=True)
class Progress:
    """One point of the running bound: after ``n`` estimation samples."""

    n: int
    p_lower: float
    radius: float
    elapsed_s: float


class CertifyJob:
    """Runs a :class:`CertifyStream` in a daemon thread; poll :attr:`snapshot`, :attr:`done`.

    :meth:`stop` ends sampling after the batch in flight, and the certificate
    is then the stream's anytime-valid one. ``predict`` (optional) runs once
    after the stream ends *on its own* (n_max or target radius), never after a
    stop, so a stop costs at most the batch in flight. An exception inside the
    thread is kept in :attr:`error` instead of being lost.
    """

    def __init__(self, stream: CertifyStream, *, predict: Callable[[], Prediction] | None = None,
                 lock: threading.Lock | None = None) -> None:
        self.stream = stream
        self._predict = predict
        self._lock = lock if lock is not None else inference_lock(stream.device)
        self._thread = threading.Thread(target=self._run, name="rs-certify-job", daemon=True)
        self._done = threading.Event()
        self._first_votes = threading.Event()
        self.snapshot: Snapshot | None = None
        self.history: list[Progress] = []
        self.certificate: Certificate | None = None
        self.prediction: Prediction | None = None
        self.error: BaseException | None = None
        self.batches = 0

    def start(self) -> CertifyJob:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask sampling to end after the batch in flight (any thread)."""
        self.stream.stop()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self.done

    def wait_for_votes(self, timeout: float | None = None) -> bool:
        """Blocks until the first estimation batch is counted (or the job ended); False on timeout.

        A live view calls this right after :meth:`start` so that its first frame already shows votes.
        """
        return self._first_votes.wait(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the job is done; True unless ``timeout`` passed first."""
        return self._done.wait(timeout)

    def _run(self) -> None:
        try:
            batches = iter(self.stream)
            while True:
                with self._lock:
                    snap = next(batches, None)
                if snap is None:
                    break
                self.batches += 1
                self.snapshot = snap
                if snap.phase == "estimation":
                    self.history.append(Progress(snap.n, snap.p_lower, snap.radius, snap.elapsed_s))
                    self._first_votes.set()
            self.certificate = self.stream.certificate()
            if self._predict is not None and self.stream.stop_reason != "stopped":
                with self._lock:
                    self.prediction = self._predict()
        except BaseException as err:  # noqa: BLE001 — reported to the polling side
            self.error = err
        finally:
            self._first_votes.set()
            self._done.set()
