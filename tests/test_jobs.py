"""CertifyJob: CERTIFY in a background thread, stopped within one batch, several at once."""

import threading

import numpy as np
import torch
from oracles import make_oracle
from torch import nn

from rs_core import CertifyStream, predict_result
from rs_core.jobs import CertifyJob, inference_lock


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
    job = CertifyJob(CertifyStream(model, x, 0.5, n0=50, n_max=3000, alpha=0.01, batch_size=400, seed=7)).start()
    assert job.wait(timeout=300)
    assert job.error is None and job.done and not job.running
    cert = job.certificate
    assert (cert.prediction, cert.radius, cert.n) == (ref.prediction, ref.radius, ref.n)
    np.testing.assert_array_equal(cert.counts, ref.counts)
    assert [p.n for p in job.history] == [400, 800, 1200, 1600, 2000, 2400, 2800, 3000]
    # The running bound never decreases (it is the running maximum of the confidence sequence).
    assert all(a.p_lower <= b.p_lower for a, b in zip(job.history, job.history[1:]))
    assert job.snapshot.done and job.snapshot.n == 3000


def test_stop_ends_sampling_after_the_batch_in_flight_and_skips_predict():
    model, x = make_oracle(0.9, 0.5)
    holder = {}
    predicted = []

    def hook(k):  # forward 1 = the sampler's shape probe, 2 = selection, 3.. = estimation; stop in the 3rd
        if k == 5:
            holder["job"].stop()

    wrapped = CallbackModel(model, hook).eval()
    stream = CertifyStream(wrapped, x, 0.5, n0=20, n_max=100_000, batch_size=100, seed=1)
    holder["job"] = job = CertifyJob(stream, predict=lambda: predicted.append(1))
    job.start()
    assert job.wait(timeout=300)
    assert wrapped.calls == 5, "no batch may run after the one during which Stop was pressed"
    cert = job.certificate
    assert cert.stop_reason == "stopped" and cert.n == 300
    assert cert.bound == "anytime-beta-mixture"
    assert not predicted and job.prediction is None


def test_predict_runs_after_a_natural_end():
    model, x = make_oracle(0.99, 0.5)
    stream = CertifyStream(model, x, 0.5, n0=20, n_max=500, batch_size=250, seed=3)
    job = CertifyJob(stream, predict=lambda: predict_result(model, x, 0.5, n=200, seed=4)).start()
    assert job.wait(timeout=300)
    assert job.prediction is not None and job.prediction.prediction == 1 and job.prediction.seed == 4


def test_an_error_in_the_thread_is_kept_not_lost():
    def boom(k):
        if k == 2:
            raise RuntimeError("model exploded")

    model, x = make_oracle(0.9, 0.5)
    job = CertifyJob(CertifyStream(CallbackModel(model, boom).eval(), x, 0.5, n0=10, n_max=1000, batch_size=100))
    assert job.start().wait(timeout=300)
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

    def make(i):
        # forward 1 is the sampler's shape probe (in the constructor); later ones run in the job's thread
        return CertifyJob(CertifyStream(CallbackModel(model, lambda k: order.append(i) if k > 1 else None).eval(),
                                        xs[i], 0.5, n0=30, n_max=2000, batch_size=100, seed=10 + i))

    jobs = [make(i) for i in range(len(xs))]
    for j in jobs:
        j.start()
    for j in jobs:
        assert j.wait(timeout=300) and j.error is None
    # They shared the device batch by batch rather than one after another.
    switches = sum(a != b for a, b in zip(order, order[1:]))
    assert len(order) == len(xs) * 21 and switches > len(xs)
    for j, ref in zip(jobs, solo):
        np.testing.assert_array_equal(j.certificate.counts, ref.counts)
        np.testing.assert_array_equal(j.certificate.counts_selection, ref.counts_selection)
        assert j.certificate.radius == ref.radius


def test_batches_hold_the_device_lock():
    model, x = make_oracle(0.9, 0.5)
    lock = threading.Lock()
    held = []
    wrapped = CallbackModel(model, lambda k: held.append(lock.locked())).eval()
    job = CertifyJob(CertifyStream(wrapped, x, 0.5, n0=10, n_max=300, batch_size=100, seed=0), lock=lock).start()
    assert job.wait(timeout=300)
    assert held == [False] + [True] * 4  # the constructor's shape probe runs before the job starts


def test_inference_lock_is_one_per_device():
    assert inference_lock("cpu") is inference_lock(torch.device("cpu"))
    assert inference_lock("cuda") is inference_lock("cuda:0") is not inference_lock("cuda:1")
    assert inference_lock("cuda") is not inference_lock("cpu")


def test_wait_for_votes_returns_once_the_first_estimation_batch_is_counted():
    model, x = make_oracle(0.9, 0.5)
    job = CertifyJob(CertifyStream(model, x, 0.5, n0=10, n_max=100_000_000, batch_size=100, seed=0)).start()
    try:
        assert job.wait_for_votes(timeout=300)
        assert job.snapshot.phase == "estimation" and job.history and job.history[0].n == 100
    finally:
        job.stop()
        assert job.wait(30)
