"""Scheduler and Job: streams in background threads, stopped within one batch, several at once, a capped
FIFO queue, and jobs of ended sessions cancelled."""

import threading
import time

import numpy as np
import pytest
import torch
from oracles import make_oracle
from torch import nn

from rs_core import CertifyStream, predict_result
from rs_core.dual.smooth import DualStream
from rs_core.smoothing.jobs import MAX_JOBS_ENV, LiveSnapshot, LiveStream, Scheduler, default_scheduler, device_key


def _submit(stream, **kw):
    return Scheduler().submit(stream, **kw)


class CallbackModel(nn.Module):
    """Wraps a model; calls ``hook(k)`` at the start of its k-th forward pass (k = 1, 2, …)."""

    def __init__(self, inner: nn.Module, hook=None):
        super().__init__()
        self.inner, self.hook, self.calls = inner, hook, 0

    def forward(self, x):
        self.calls += 1
        if self.hook is not None:
            self.hook(self.calls)
        return self.inner(x)


def test_job_gives_the_same_certificate_as_the_stream_it_runs():
    model, x = make_oracle(0.95, 0.5)
    ref = CertifyStream(model, x, 0.5, n0=50, n_max=3000, alpha=0.01, batch_size=400, seed=7).run()
    job = _submit(CertifyStream(model, x, 0.5, n0=50, n_max=3000, alpha=0.01, batch_size=400, seed=7))
    assert job.wait(timeout=300)
    assert job.error is None and job.done and not job.running
    cert = job.certificate
    assert (cert.prediction, cert.radius, cert.n) == (ref.prediction, ref.radius, ref.n)
    np.testing.assert_array_equal(cert.counts, ref.counts)
    assert [p.n for p in job.history] == [400, 800, 1200, 1600, 2000, 2400, 2800, 3000]
    # Each point's bound is the one at its own n, whatever the batches before it: a stream in batches of 200
    # shows the same bound at every n the job's batches of 400 reach.
    halves = {s.n: s.p_lower for s in CertifyStream(model, x, 0.5, n0=50, n_max=3000, alpha=0.01, batch_size=200,
                                                     seed=7) if s.phase == "estimation"}
    assert [p.p_lower for p in job.history] == [halves[p.n] for p in job.history]
    assert job.snapshot.done and job.snapshot.n == 3000


def test_stop_ends_sampling_after_the_batch_in_flight_and_skips_predict():
    model, x = make_oracle(0.9, 0.5)
    holder = {}
    predicted = []

    def hook(k):  # forward 1 = the sampler's shape probe, 2 = selection, 3.. = estimation; stop in the 3rd
        if k == 5:
            holder["stream"].stop()  # what Job.stop does for a running job

    wrapped = CallbackModel(model, hook).eval()
    stream = CertifyStream(wrapped, x, 0.5, n0=20, n_max=100_000, batch_size=100, seed=1)
    holder["stream"] = stream
    job = _submit(stream, predict=lambda: predicted.append(1))
    assert job.wait(timeout=300)
    assert wrapped.calls == 5, "no batch may run after the one during which Stop was pressed"
    cert = job.certificate
    assert cert.stop_reason == "stopped" and cert.n == 300
    assert cert.bound == "anytime-beta-mixture"
    assert not predicted and job.prediction is None


def test_predict_runs_after_a_natural_end():
    model, x = make_oracle(0.99, 0.5)
    stream = CertifyStream(model, x, 0.5, n0=20, n_max=500, batch_size=250, seed=3)
    job = _submit(stream, predict=lambda: predict_result(model, x, 0.5, n=200, seed=4))
    assert job.wait(timeout=300)
    assert job.prediction is not None and job.prediction.prediction == 1 and job.prediction.seed == 4


def test_an_error_in_the_thread_is_kept_not_lost():
    def boom(k):
        if k == 2:
            raise RuntimeError("model exploded")

    model, x = make_oracle(0.9, 0.5)
    job = _submit(CertifyStream(CallbackModel(model, boom).eval(), x, 0.5, n0=10, n_max=1000, batch_size=100))
    assert job.wait(timeout=300)
    assert isinstance(job.error, RuntimeError) and "exploded" in str(job.error)
    assert job.certificate is None


def test_concurrent_jobs_on_one_model_each_get_their_own_result():
    """Several sessions certifying at once: per-call generators make each result equal its solo run."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 5)).eval()
    xs = [torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    solo = [CertifyStream(model, x, 0.5, n0=30, n_max=2000, batch_size=100, seed=10 + i).run()
            for i, x in enumerate(xs)]
    order = []

    def make(scheduler, i):
        # forward 1 is the sampler's shape probe (in the constructor); later ones run in the job's thread
        return scheduler.submit(CertifyStream(CallbackModel(model, lambda k: order.append(i) if k > 1 else None).eval(),
                                        xs[i], 0.5, n0=30, n_max=2000, batch_size=100, seed=10 + i))

    scheduler = Scheduler(max_running=len(xs))
    jobs = [make(scheduler, i) for i in range(len(xs))]
    for j in jobs:
        assert j.wait(timeout=300) and j.error is None
    # They shared the device batch by batch rather than one after another.
    switches = sum(a != b for a, b in zip(order, order[1:]))
    assert len(order) == len(xs) * 21 and switches > len(xs)
    for j, ref in zip(jobs, solo):
        np.testing.assert_array_equal(j.certificate.counts, ref.counts)
        np.testing.assert_array_equal(j.certificate.counts_selection, ref.counts_selection)
        assert j.certificate.radius == ref.radius


def test_batches_hold_the_device_lock_and_exclusive_takes_it_too():
    model, x = make_oracle(0.9, 0.5)
    scheduler = Scheduler()
    lock = scheduler._lock("cpu")
    held = []
    wrapped = CallbackModel(model, lambda k: held.append(lock.locked())).eval()
    stream = scheduler.exclusive("cpu", lambda: CertifyStream(wrapped, x, 0.5, n0=10, n_max=300, batch_size=100,
                                                              seed=0))
    job = scheduler.submit(stream)
    assert job.wait(timeout=300)
    assert held == [True] * 5  # the constructor's shape probe (exclusive) and every batch of the job


def test_devices_are_keyed_one_per_card():
    assert device_key("cpu") == device_key(torch.device("cpu")) == "cpu"
    assert device_key("cuda") == device_key("cuda:0") != device_key("cuda:1")
    scheduler = Scheduler()
    assert scheduler._lock("cuda") is scheduler._lock("cuda:0") is not scheduler._lock("cpu")


def test_wait_for_votes_returns_once_the_first_estimation_batch_is_counted():
    model, x = make_oracle(0.9, 0.5)
    job = _submit(CertifyStream(model, x, 0.5, n0=10, n_max=100_000_000, batch_size=100, seed=0))
    try:
        assert job.wait_for_votes(timeout=300)
        assert job.snapshot.phase == "estimation" and job.history and job.history[0].n == 100
    finally:
        job.stop()
        assert job.wait(30)


def _long(model, x, seed=0):
    return CertifyStream(model, x, 0.5, n0=10, n_max=100_000_000, batch_size=100, seed=seed)


def test_the_cap_queues_later_jobs_in_order_and_starts_them_as_slots_free():
    model, x = make_oracle(0.9, 0.5)
    scheduler = Scheduler(max_running=1)
    first = scheduler.submit(_long(model, x, 0))
    second = scheduler.submit(CertifyStream(model, x, 0.5, n0=10, n_max=500, batch_size=100, seed=1))
    third = scheduler.submit(CertifyStream(model, x, 0.5, n0=10, n_max=500, batch_size=100, seed=2))
    try:
        assert first.wait_for_votes(300)
        time.sleep(0.3)  # the queued jobs must not start meanwhile
        assert (first.state, second.state, third.state) == ("running", "queued", "queued")
        assert (first.position(), second.position(), third.position()) == (None, 1, 2)
        assert (scheduler.running, scheduler.queued) == (1, 2)
        assert second.snapshot is None and second.batches == 0
    finally:
        first.stop()
    assert second.wait(300) and third.wait(300)
    assert second.certificate.n == third.certificate.n == 500
    assert second.started_at <= third.started_at  # FIFO
    assert (scheduler.running, scheduler.queued) == (0, 0)


def test_stopping_a_queued_job_ends_it_at_once_without_a_sample():
    model, x = make_oracle(0.9, 0.5)
    scheduler = Scheduler(max_running=1)
    first = scheduler.submit(_long(model, x))
    counted = CallbackModel(model).eval()
    waiting = scheduler.submit(CertifyStream(counted, x, 0.5, n0=10, n_max=500, batch_size=100, seed=1))
    calls_before = counted.calls  # the constructor's shape probe
    waiting.stop()
    assert waiting.done and waiting.position() is None and waiting.started_at is None
    assert waiting.certificate.n == 0 and waiting.certificate.prediction == -1
    first.stop()
    assert first.wait(300)
    time.sleep(0.2)
    assert counted.calls == calls_before, "a stopped queued job must never run"


def test_a_job_whose_session_ended_is_cancelled_within_the_grace_period():
    model, x = make_oracle(0.9, 0.5)
    scheduler = Scheduler(grace_s=0.5, watch_s=0.1)
    connected = threading.Event()
    connected.set()
    predicted = []
    job = scheduler.submit(_long(model, x), alive=connected.is_set, owner="tab-1",
                           predict=lambda: predicted.append(1))
    keep = scheduler.submit(_long(model, x, 1), alive=lambda: True, owner="tab-2")
    try:
        assert job.wait_for_votes(300)
        time.sleep(0.5)
        assert job.running and job.cancelled is None
        connected.clear()
        t0 = time.monotonic()
        assert job.wait(30)
        took = time.monotonic() - t0
        assert 0.4 <= took < 5, took  # not before the grace period, and promptly after it
        assert job.cancelled == "the session ended" and job.certificate.stop_reason == "stopped"
        assert not predicted, "PREDICT must not run for a cancelled job"
        assert keep.running, "another session's job runs on"
    finally:
        keep.stop()
        assert keep.wait(30)


def test_a_disconnection_shorter_than_the_grace_period_does_not_cancel():
    model, x = make_oracle(0.9, 0.5)
    scheduler = Scheduler(grace_s=1.0, watch_s=0.1)
    connected = threading.Event()
    connected.set()
    job = scheduler.submit(_long(model, x), alive=connected.is_set)
    try:
        assert job.wait_for_votes(300)
        connected.clear()
        time.sleep(0.4)
        connected.set()  # the tab reconnected
        time.sleep(1.2)
        assert job.running and job.cancelled is None
    finally:
        job.stop()
        assert job.wait(30)


def test_cancel_owner_ends_queued_and_running_jobs_of_that_owner_only():
    model, x = make_oracle(0.9, 0.5)
    scheduler = Scheduler(max_running=1)
    mine = scheduler.submit(_long(model, x), owner="a")
    theirs = scheduler.submit(_long(model, x, 1), owner="b")
    mine_queued = scheduler.submit(_long(model, x, 2), owner="a")
    assert mine.wait_for_votes(300)
    assert scheduler.cancel_owner("a", "reloaded") == 2
    assert mine.wait(30) and mine_queued.wait(30)
    assert mine.cancelled == mine_queued.cancelled == "reloaded"
    assert theirs.wait_for_votes(300) and theirs.running
    theirs.stop()
    assert theirs.wait(30)


def test_streams_follow_the_live_protocol_and_other_objects_are_refused():
    model, x = make_oracle(0.9, 0.5)
    stream = CertifyStream(model, x, 0.5, n0=10, n_max=200, batch_size=100, seed=0)
    assert isinstance(stream, LiveStream)
    snaps = list(stream)
    assert all(isinstance(s, LiveSnapshot) and s.inner is s and (s.stage, s.stages) == (1, 1) for s in snaps)
    dual = DualStream(model, {0.25: model, 0.5: model}, x, 0.5, n0=10, n_max=200, batch_size=100, seed=0)
    assert isinstance(dual, LiveStream)
    dsnaps = list(dual)
    assert all(isinstance(s, LiveSnapshot) and s.stages == 2 for s in dsnaps)
    assert dsnaps[0].label == "σ-estimator"
    with pytest.raises(ValueError, match="^stream"):
        Scheduler().submit([1, 2, 3])


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5"])
def test_the_job_cap_from_the_environment_is_checked(monkeypatch, raw):
    monkeypatch.setenv(MAX_JOBS_ENV, raw)
    with pytest.raises(ValueError, match=f"^{MAX_JOBS_ENV}"):
        Scheduler()
    monkeypatch.setenv(MAX_JOBS_ENV, "3")
    assert Scheduler().max_running == 3


@pytest.mark.parametrize("kw", [{"max_running": 0}, {"max_running": True}, {"grace_s": 0}, {"watch_s": float("nan")}])
def test_scheduler_parameters_are_checked(kw):
    with pytest.raises(ValueError, match=f"^{next(iter(kw))}"):
        Scheduler(**kw)


def test_the_default_scheduler_is_one_per_process():
    assert default_scheduler() is default_scheduler()
