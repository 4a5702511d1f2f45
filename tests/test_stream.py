"""CertifyStream: anytime-valid CERTIFY, tested against exact laws computed independently of rs_core.smoothing.stats."""

import math
import threading
import time

import numpy as np
import pytest
import torch
from oracles import RecordingModel, Switch, crossing_probability, crossing_thresholds, make_oracle
from scipy import stats
from torch import nn

from rs_core import ABSTAIN, CertifyStream, Smooth
from rs_core.smoothing.stats import BetaMixture, clopper_pearson_lower, log_mixture_martingale


def test_stream_snapshots_and_final_certificate_use_the_anytime_bound():
    model, x = make_oracle(0.9, 0.5)
    stream = CertifyStream(model, x, 0.5, n0=100, n_max=3000, alpha=0.001, batch_size=1000, seed=0)
    snaps = list(stream)
    assert [s.phase for s in snaps] == ["selection", "estimation", "estimation", "estimation"]
    assert [s.n for s in snaps] == [0, 1000, 2000, 3000]
    assert snaps[-1].done and snaps[-1].stop_reason == "n_max"
    assert all(b.p_lower >= a.p_lower for a, b in zip(snaps, snaps[1:]))  # running maximum
    cert = stream.certificate()
    assert cert.bound == "anytime-beta-mixture" and cert.n == 3000 and cert.n_max == 3000
    assert cert.prediction == 1 and cert.p_lower == snaps[-1].p_lower
    assert cert.p_lower < clopper_pearson_lower(int(cert.counts[1]), 3000, 0.001)  # the price of peeking


def test_stream_stops_once_target_radius_is_certified():
    model, x = make_oracle(0.999, 0.5)
    target = 0.5 * stats.norm.ppf(0.99)
    stream = CertifyStream(model, x, 0.5, 100, 100_000, 0.001, 500, seed=0, target_radius=target)
    cert = stream.run()
    assert cert.stop_reason == "target_certified" and cert.radius >= target
    assert cert.n < 100_000


def test_stream_stops_once_target_radius_is_out_of_reach():
    model, x = make_oracle(0.9, 0.5)
    stream = CertifyStream(model, x, 0.5, 100, 100_000, 0.001, 1000, seed=0, target_radius=2.5)
    cert = stream.run()
    assert cert.stop_reason == "target_unreachable"
    assert cert.n == 1000  # 2.5 > 0.5 × 3.81, the ceiling at n_max: known after the first batch
    reachable = CertifyStream(model, x, 0.5, 100, 100_000, 0.001, 1000, seed=0, target_radius=0.5)
    assert reachable.run().stop_reason != "target_unreachable" or reachable.n > 1000


class Slow(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        time.sleep(0.02)
        return self.inner(x)


def test_stop_from_another_thread_ends_within_one_batch_and_keeps_the_samples():
    model, x = make_oracle(0.9, 0.5)
    stream = CertifyStream(Slow(model).eval(), x, 0.5, 100, 10**7, 0.001, 200, seed=0)
    worker = threading.Thread(target=stream.run)
    worker.start()
    while stream.n < 1000:
        time.sleep(0.005)
    n_at_stop = stream.n
    stream.stop()
    worker.join(timeout=10)
    assert not worker.is_alive()
    cert = stream.certificate()
    assert cert.stop_reason == "stopped"
    assert n_at_stop <= cert.n <= n_at_stop + 200
    assert cert.counts.sum() == cert.n and cert.prediction == 1


def test_certificate_before_any_sample_abstains():
    model, x = make_oracle(0.9, 0.5)
    stream = CertifyStream(model, x, 0.5, 100, 1000, 0.001, 100, seed=0)
    stream.stop()
    cert = stream.run()
    assert cert.prediction == ABSTAIN and cert.n == 0 and cert.stop_reason == "stopped"


@pytest.mark.slow
def test_stream_stopping_when_the_true_radius_is_claimed_errs_at_most_alpha():
    """Worst-case stopping rule: the target is the true radius, so 'target_certified' is a false certificate."""
    p_a, sigma, alpha = 0.9, 0.5, 0.1
    model, x = make_oracle(p_a, sigma)
    true_radius = model.true_radius(x)
    runs, false = 150, 0
    for seed in range(runs):
        cert = CertifyStream(model, x, sigma, 20, 4000, alpha, 100, seed=seed, target_radius=true_radius).run()
        false += cert.prediction != ABSTAIN and (cert.prediction != 1 or cert.radius > true_radius)
    assert stats.binomtest(int(false), runs, alpha, alternative="greater").pvalue > 1e-3


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_max=0), "n_max"), (dict(target_radius=-1.0), "target_radius"),
    (dict(target_radius=float("nan")), "target_radius"), (dict(n0=0), "n0"),
])
def test_stream_invalid_parameters(kwargs, name):
    model, x = make_oracle(0.9, 0.5)
    args = dict(model=model, x=x, sigma=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"^{name}:"):
        CertifyStream(**args)


# --- soundness against the exact law -------------------------------------------------------------

def _library_guess(p, alpha, mixture):
    """A threshold proposed by the library's own statistic; crossing_thresholds keeps it only if the
    independent oracle confirms it (else it bisects with the oracle alone)."""
    def guess(n):
        k = np.arange(n + 1)
        ok = log_mixture_martingale(k, n, p, mixture) >= math.log(1 / alpha)
        return int(np.argmax(ok)) if ok.any() else n + 1
    return guess


def stream_false_certificate_law(p_a, n0, batch, looks, alpha, mixture):
    """Exact P(false certificate) of a stream on a two-class oracle whose class 1 has probability p_a ≥ ½,
    under the worst stopping rule (stop at the first look, one per batch up to n_max = looks · batch, where
    the bound exceeds the truth): a false certificate ⟺ the bound crosses the truth at some look.

    False: class 1 certified with p_lower > p_a (radius above the true radius), or class 0 certified at all.
    Class 1 is selected on a strict majority of n0 independent votes (argmax breaks ties to class 0);
    the bound on the selected class crosses p at a look ⟺ M_n(p) ≥ 1/α (Ville's event).
    """
    m = (mixture.a, mixture.b, mixture.floor)
    sel_1 = stats.binom.sf(n0 // 2, n0, p_a)
    cross_1 = crossing_probability(p_a, batch, crossing_thresholds(
        p_a, looks, batch, alpha, *m, guess=_library_guess(p_a, alpha, mixture)))
    cross_0 = crossing_probability(1 - p_a, batch, crossing_thresholds(
        0.5, looks, batch, alpha, *m, guess=_library_guess(0.5, alpha, mixture)))
    return sel_1 * cross_1 + (1 - sel_1) * cross_0


# A mixture that puts its mass near the truth makes crossings frequent, so that α and 2α (or a
# mis-normalized mixture, or a class chosen from its own votes) give clearly different laws.
STREAM_CASES = {
    "p=0.8": dict(p_a=0.8, mixture=BetaMixture(17.0, 3.0, 0.5)),
    "p=0.5": dict(p_a=0.5, mixture=BetaMixture(6.0, 4.0, 0.5)),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", STREAM_CASES)
def test_stream_false_certificates_follow_their_exact_law_at_the_batch_granularity(case):
    p_a, mixture = STREAM_CASES[case]["p_a"], STREAM_CASES[case]["mixture"]
    sigma, n0, batch, looks, alpha, runs = 0.5, 20, 20, 25, 0.2, 1000
    model, x = make_oracle(p_a, sigma)
    smooth = Smooth(model, sigma, batch)
    false = 0
    for seed in range(runs):
        # The worst user: stops at the first snapshot whose certificate is false (class 0 certified, or class 1
        # with p_lower above p_a), else runs to n_max. A stream's certificate is the bound at its stopping point,
        # so this user's false certificates are exactly the runs where the bound crosses the truth at some look.
        stream = smooth.stream(x, n0, looks * batch, alpha, seed=seed, mixture=mixture)
        for snap in stream:
            if snap.phase == "estimation" and snap.p_lower > 0.5 and (
                    snap.top_class == 0 or snap.p_lower > p_a):
                break
        cert = stream.certificate()
        assert cert.bound == "anytime-beta-mixture" and cert.n % batch == 0
        false += cert.prediction == 0 or (cert.prediction == 1 and cert.p_lower > p_a)
    law = stream_false_certificate_law(p_a, n0, batch, looks, alpha, mixture)
    law_2a = stream_false_certificate_law(p_a, n0, batch, looks, 2 * alpha, mixture)
    assert law <= alpha  # Ville's inequality, checked exactly
    # The observed count agrees with the exact law (two-sided exact test) …
    print(f"{case}: observed {false / runs:.4f}, exact law {law:.4f}, law at 2α {law_2a:.4f}")
    assert stats.binomtest(false, runs, law).pvalue > 1e-4, (false / runs, law)
    # … and the test has power: the law at 2α is rejected.
    assert law_2a > 1.8 * law
    assert stats.binomtest(false, runs, law_2a).pvalue < 1e-6, (false / runs, law_2a)


def test_the_stream_bounds_the_selected_class_with_fresh_votes_only():
    """The class comes from the selection votes alone, and those votes never enter the bound."""
    model = Switch().eval()
    stream = CertifyStream(model, torch.zeros(1, 2, 2), 0.5, n0=30, n_max=200, alpha=0.01, batch_size=50, seed=0)
    cert = stream.run()
    assert cert.counts_selection.tolist() == [0, 30]
    assert cert.counts.tolist() == [200, 0] and cert.n == 200  # no selection vote counted again
    assert stream.top_class == 1 and cert.prediction == ABSTAIN and cert.p_lower == 0.0


def test_stream_selection_and_estimation_noise_are_disjoint_draws():
    m = RecordingModel().eval()
    CertifyStream(m, torch.zeros(1, 2, 2), 1.0, n0=30, n_max=100, alpha=0.01, batch_size=50, seed=0).run()
    sel, est = m.seen[1], torch.cat(m.seen[2:])
    assert sel.shape[0] == 30 and est.shape[0] == 100
    assert not np.intersect1d(sel.flatten().numpy(), est.flatten().numpy()).size


def test_batch_size_is_public_and_read_only():
    stream = CertifyStream(Switch().eval(), torch.zeros(1, 2, 2), 0.5, n0=30, n_max=100, batch_size=40, seed=0)
    assert stream.batch_size == 40
    with pytest.raises(AttributeError):
        stream.batch_size = 8
    assert stream.run().batch_size == stream.batch_size == 40


# ------------------------------------------------------------------------------ time-sized batches, interruptible selection


class _Slow(nn.Module):
    """2 ms of "compute" per image (sleep), so a 1,000-image batch would hold Stop for 2 s."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        time.sleep(0.002 * x.shape[0])
        return self.lin(x.flatten(1))


def test_time_sized_batches_answer_stop_within_a_batch_on_a_slow_model():
    from rs_core.smoothing.sampling import time_batch_size

    model = _Slow().eval()
    x = torch.zeros(1, 2, 2)
    b = time_batch_size(model, x, 1000, target_s=0.1)
    assert 16 <= b <= 64 and b & (b - 1) == 0  # a power of two near 0.1 s / 2 ms = 50
    stream = CertifyStream(model, x, 0.5, n0=50, n_max=10**7, batch_size=1000, seed=0, batch_seconds=0.1)
    seen = threading.Event()
    done: list[float] = []

    def run():
        for snap in stream:
            if snap.phase == "estimation":
                seen.set()
        done.append(time.perf_counter())

    t = threading.Thread(target=run)
    t.start()
    assert seen.wait(20)
    pressed = time.perf_counter()
    stream.stop()
    t.join(20)
    cert = stream.certificate()
    assert cert.stop_reason == "stopped" and cert.batch_seconds == 0.1 and cert.batch_size <= 64
    assert stream.batch_size == cert.batch_size  # the time-sized one, as the page reads it for PREDICT
    assert done[0] - pressed < 1.0  # one ≤ 0.13 s batch, not a 2 s one (generous for a loaded CI machine)


def test_stop_during_selection_ends_promptly_and_abstains():
    model = _Slow().eval()
    stream = CertifyStream(model, torch.zeros(1, 2, 2), 0.5, n0=100_000, n_max=1000, batch_size=20, seed=0)
    snaps = []
    for snap in stream:
        snaps.append(snap)
        if len(snaps) == 2:
            stream.stop()
    cert = stream.certificate()
    assert [s.phase for s in snaps] == ["selection"] * 3 and snaps[0].counts_selection.sum() == 20
    assert cert.prediction == ABSTAIN and cert.stop_reason == "stopped" and cert.n == 0
    assert snaps[-1].top_class == ABSTAIN  # no class is named from a selection cut short
    assert cert.n0 == int(cert.counts_selection.sum()) == 60  # what was drawn, not what was asked


def test_selection_in_batches_draws_the_same_noise_as_one_call_and_a_recorded_batch_reproduces():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).eval()
    x = torch.rand(1, 4, 4)
    stream = CertifyStream(model, x, 0.5, n0=250, n_max=300, batch_size=100, seed=7)
    stream.run()
    ref = Smooth(model, 0.5, batch_size=100).sampler(x, seed=7)
    assert np.array_equal(stream.certificate().counts_selection, ref.sample(250)[0].numpy())
    timed = CertifyStream(model, x, 0.5, n0=250, n_max=3000, batch_size=1000, seed=7, batch_seconds=0.5).run()
    again = CertifyStream(model, x, 0.5, n0=250, n_max=3000, batch_size=timed.batch_size, seed=7).run()
    assert np.array_equal(timed.counts, again.counts) and np.array_equal(timed.counts_selection, again.counts_selection)


class FakeClock:
    """Seconds that advance only when a :class:`_Clocked` model runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Clocked(nn.Module):
    """``core`` on flattened inputs, each forward pass advancing a fake clock: 1e-4 s per image, 4e-3 s (40× slower:
    other users arrive) after ``slow_after`` images, 1e-5 s (the load gone) after ``fast_after``."""

    def __init__(self, core: nn.Module, clock: FakeClock, slow_after: int, fast_after: int) -> None:
        super().__init__()
        self.core, self.clock, self.seen = core, clock, 0
        self.slow_after, self.fast_after = slow_after, fast_after

    def forward(self, x):
        self.seen += x.shape[0]
        per_image = 1e-5 if self.seen > self.fast_after else 4e-3 if self.seen > self.slow_after else 1e-4
        self.clock.now += per_image * x.shape[0]
        return self.core(x.flatten(1))


def _fields(cert) -> tuple:
    """A certificate without its wall-clock and batch-size fields."""
    return (cert.prediction, cert.radius, cert.p_lower, cert.counts.tolist(), cert.counts_selection.tolist(),
            cert.n, cert.n0, cert.seed, cert.stop_reason)


def test_the_certificate_is_the_same_for_any_batch_sizes_and_a_time_sized_run_whose_speed_changes():
    """Batch sizes 1, 7, 64, 100, 350 and 1,000, and a run re-timed by a fake clock (then 40× slower, then fast
    again): one certificate — counts, bound and radius — for all of them, at n_max and when stopped at n = 1,400. The input has
    75 elements per sample, a size where torch's own randn depends on how its draws are split."""
    x = torch.rand(3, 5, 5, generator=torch.Generator().manual_seed(3))
    core = nn.Linear(75, 4)
    with torch.no_grad():  # class 0 ahead, but noise-dependent votes: pA ≈ 0.8, a radius that moves with every vote
        core.weight.normal_(0.0, 0.2, generator=torch.Generator().manual_seed(4))
        core.bias.copy_(torch.tensor([2.0, 0.0, 0.0, 0.0]) - core.weight @ x.flatten())
    model = nn.Sequential(nn.Flatten(), core).eval()
    kwargs = dict(sigma=0.5, n0=100, alpha=0.01, seed=11)
    full = [CertifyStream(model, x, n_max=6000, batch_size=b, **kwargs).run() for b in (64, 1000)]
    clock = FakeClock()
    # The first size is probed on the clean input (about 2,000 images in all), so the load arrives after that.
    clocked = _Clocked(core, clock, slow_after=3000, fast_after=4500).eval()
    stream = CertifyStream(clocked, x, n_max=6000, batch_size=1000, batch_seconds=0.05, clock=clock, **kwargs)
    ends = [snap.n for snap in stream if snap.phase == "estimation"]
    timed = stream.certificate()
    assert full[0].prediction == 0 and 0 < full[0].radius and 0.6 < full[0].counts[0] / 6000 < 0.95
    assert all(_fields(c) == _fields(full[0]) for c in [*full[1:], timed])
    # The batch size followed the clock: down to 0.05 s / 4 ms ≈ 12 images while slow, back up to 1,000 after.
    sizes = np.diff([0, *ends])[:-1].tolist()  # the estimation batches, the last (a remainder) left out
    smallest = sizes.index(min(sizes))
    assert min(sizes) <= 16 and max(sizes[smallest:]) == 1000, sizes
    assert timed.batch_seconds == 0.05
    stopped = []
    for b in (1, 7, 100, 350):  # batch 1 and 7 stopped at 1,400 rather than run to 6,000: the test stays short
        stream = CertifyStream(model, x, n_max=6000, batch_size=b, **kwargs)
        for snap in stream:
            if snap.n >= 1400:
                break
        stopped.append(stream.certificate())
    assert stopped[0].n == 1400 and all(_fields(c) == _fields(stopped[0]) for c in stopped[1:])


def test_batch_seconds_is_checked():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
    with pytest.raises(ValueError, match="batch_seconds"):
        CertifyStream(model, torch.zeros(1, 2, 2), 0.5, batch_seconds=-1)
