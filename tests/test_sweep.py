"""σ side by side: one CertifyStream per σ, seeds derived per σ, stop, and the best-σ mode's Bonferroni
guarantee checked against its exact law on a linear oracle (computed independently of rs_core.smoothing.stats)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from oracles import LinearOracle, RecordingModel, crossing_thresholds, make_oracle
from scipy import stats
from torch import nn

from rs_core import ABSTAIN, Certificate, CertifyStream
from rs_core.smoothing.seeding import derive_seed
from rs_core.smoothing.stats import DEFAULT_MIXTURE, log_mixture_martingale
from rs_core.smoothing.sweep import MAX_SIGMAS, SigmaSweepStream, SweepCertificate, SweepSnapshot

SIGMAS = (0.25, 0.5, 1.0)


def _oracle():
    """A linear oracle on 1×4×4 inputs whose class 1 has pA = 0.9 at σ = 0.5 (so < 0.9 at σ = 1, > at 0.25)."""
    return make_oracle(0.9, 0.5)


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


# --- parameters ------------------------------------------------------------------------------------

@pytest.mark.parametrize("sigmas", [
    [], [0.5, -1.0], [0.0], [float("nan")], [0.25, float("inf")], [0.5, 0.25, 0.5], [0.5, np.float64(0.5)],
    [0.01 * (i + 1) for i in range(MAX_SIGMAS + 1)], ["0.5"], [None], [True], 0.5, "0.25, 0.5", {0.25, 0.5},
    {0.25: 1}, [torch.tensor(0.5)],
], ids=lambda s: repr(s)[:40])
def test_bad_sigmas_name_themselves(sigmas):
    model, x = _oracle()
    with pytest.raises(ValueError, match="^sigmas: "):
        SigmaSweepStream(model, x, sigmas, n0=10, n_max=20)


def test_sigmas_keep_their_order_and_accept_any_real_sequence():
    model, x = _oracle()
    assert SigmaSweepStream(model, x, [1.0, 0.25], n0=10, n_max=20).sigmas == (1.0, 0.25)
    assert SigmaSweepStream(model, x, np.array([0.5, 2]), n0=10, n_max=20).sigmas == (0.5, 2.0)
    assert SigmaSweepStream(model, x, (s for s in [0.3]), n0=10, n_max=20).sigmas == (0.3,)
    assert len(SigmaSweepStream(model, x, [0.01 * (i + 1) for i in range(MAX_SIGMAS)], n0=10, n_max=20).sigmas) == 32


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": 0.0}, "^alpha:"), ({"alpha": 1.0}, "^alpha:"), ({"n0": 0}, "^n0:"), ({"n_max": 0}, "^n_max:"),
    ({"batch_size": 0}, "^batch_size:"), ({"seed": -1}, "^seed:"), ({"seed": 2**64}, "^seed:"),
    ({"best": "yes"}, "^best:"), ({"best": 1}, "^best:"), ({"autocast": "fp8"}, "^autocast:"),
    ({"x": torch.zeros(2, 1, 4, 4)}, "^x:"), ({"x": torch.full((1, 4, 4), float("nan"))}, "^x:"),
    ({"model": nn.Linear(16, 2)}, "^model:"), ({"model": "resnet"}, "^model:"),
])
def test_bad_parameters_name_themselves(kwargs, message):
    model, x = _oracle()
    args = {"model": model, "x": x, "sigmas": SIGMAS, "n0": 10, "n_max": 20} | kwargs
    with pytest.raises(ValueError, match=message):
        SigmaSweepStream(**args)


# --- α, seeds, independence ------------------------------------------------------------------------

@pytest.mark.parametrize("best", [True, False])
def test_each_sigma_is_at_alpha_over_k_in_best_mode_and_at_alpha_otherwise(best):
    model, x = _oracle()
    sweep = SigmaSweepStream(model, x, SIGMAS, n0=20, n_max=200, alpha=0.003, batch_size=100, best=best, seed=1)
    cert = sweep.run()
    each = 0.001 if best else 0.003
    assert sweep.alpha == cert.alpha == 0.003 and sweep.best is cert.best is best
    assert sweep.alpha_each == cert.alpha_each == pytest.approx(each, rel=1e-15)
    assert [c.alpha for c in cert.certificates] == [sweep.alpha_each] * 3
    d = json.loads(json.dumps(cert.to_dict()))
    assert d["alpha"] == 0.003 and d["alpha_each"] == sweep.alpha_each and d["best"] is best
    assert d["sigmas"] == list(SIGMAS) and [c["alpha"] for c in d["certificates"]] == [sweep.alpha_each] * 3
    assert d["best_index"] == cert.best_index and d["seed"] == 1
    if best:
        assert "α/k = 0.001" in d["guarantee"] and "1 − α = 0.997" in d["guarantee"]
        assert cert.best_index is not None
    else:
        assert "on its own" in d["guarantee"] and "does not" in d["guarantee"]
        assert cert.best_index is None  # no σ is chosen on the user's behalf


def test_each_sigma_is_a_plain_certify_stream_with_its_derived_seed():
    """Same certificate as a CertifyStream run alone at that σ with seed derive_seed(seed, i): the σ's
    share no noise and no state, and the whole sweep repeats exactly for a fixed seed."""
    model, x = _oracle()
    seed = 2**64 - 1
    args = {"n0": 50, "n_max": 1000, "alpha": 0.003, "batch_size": 300}
    cert = SigmaSweepStream(model, x, SIGMAS, **args, best=True, seed=seed).run()
    again = SigmaSweepStream(model, x, SIGMAS, **args, best=True, seed=seed).run()
    other = SigmaSweepStream(model, x, SIGMAS, **args, best=True, seed=0).run()
    assert len({c.seed for c in cert.certificates}) == 3
    for i, (sigma, c) in enumerate(zip(SIGMAS, cert.certificates, strict=True)):
        ref = CertifyStream(model, x, sigma, 50, 1000, 0.001, 300, seed=derive_seed(seed, i)).run()
        assert c.seed == ref.seed == derive_seed(seed, i) and c.sigma == sigma
        for a in (ref, again.certificates[i]):
            np.testing.assert_array_equal(c.counts_selection, a.counts_selection)
            np.testing.assert_array_equal(c.counts, a.counts)
            assert (c.prediction, c.p_lower, c.radius, c.n, c.stop_reason) == \
                (a.prediction, a.p_lower, a.radius, a.n, a.stop_reason)
        assert not np.array_equal(c.counts, other.certificates[i].counts)
    assert cert.best_index == again.best_index
    radii = [c.radius for c in cert.certificates]
    assert cert.best_index == int(np.argmax(radii)) and cert.certificates[cert.best_index].prediction == 1


def test_sigmas_run_one_after_another_each_at_its_own_noise():
    """Stream i + 1 is built (its shape probe, one clean input) only after stream i's last batch."""
    model = RecordingModel().eval()
    sweep = SigmaSweepStream(model, torch.zeros(1, 2, 2), [0.25, 1.0], n0=30, n_max=100, alpha=0.01,
                             batch_size=50, seed=0)
    snaps = list(sweep)
    assert [t.shape[0] for t in model.seen] == [1, 30, 50, 50, 1, 30, 50, 50]
    for t, sigma in zip([model.seen[i] for i in (1, 2, 3, 5, 6, 7)], [0.25] * 3 + [1.0] * 3, strict=True):
        assert float(t.std()) == pytest.approx(sigma, rel=0.25)
    assert all(isinstance(s, SweepSnapshot) for s in snaps)
    assert [(s.stage, s.stages, s.inner.phase, s.inner.n) for s in snaps] == [
        (1, 2, "selection", 0), (1, 2, "estimation", 50), (1, 2, "estimation", 100),
        (2, 2, "selection", 0), (2, 2, "estimation", 50), (2, 2, "estimation", 100)]
    assert [s.label for s in snaps] == ["σ = 0.25"] * 3 + ["σ = 1"] * 3
    assert [s.sigma for s in snaps] == [0.25] * 3 + [1.0] * 3
    assert sweep.stop_reason == "n_max" and [c.n for c in sweep.certificate().certificates] == [100, 100]
    with pytest.raises(RuntimeError, match="only once"):
        list(sweep)


def test_the_sweep_records_a_fresh_seed_when_none_is_given():
    model, x = _oracle()
    a = SigmaSweepStream(model, x, SIGMAS, n0=10, n_max=20, batch_size=20)
    b = SigmaSweepStream(model, x, SIGMAS, n0=10, n_max=20, batch_size=20)
    assert isinstance(a.seed, int) and a.seed != b.seed
    cert = a.run()
    assert cert.seed == a.seed and [c.seed for c in cert.certificates] == [derive_seed(a.seed, i) for i in range(3)]


def test_the_input_is_copied_when_the_sweep_is_built():
    model, x = _oracle()
    x = x.clone()
    ref = SigmaSweepStream(model, x, SIGMAS, n0=20, n_max=200, batch_size=100, seed=3).run()
    sweep = SigmaSweepStream(model, x, SIGMAS, n0=20, n_max=200, batch_size=100, seed=3)
    x.fill_(0.0)  # the caller reuses its tensor while the sweep runs
    cert = sweep.run()
    for a, b in zip(ref.certificates, cert.certificates, strict=True):
        np.testing.assert_array_equal(a.counts, b.counts)


# --- stop ------------------------------------------------------------------------------------------

def test_certificate_before_any_sample_has_no_sigma_run():
    model, x = _oracle()
    sweep = SigmaSweepStream(model, x, SIGMAS, n0=10, n_max=20, best=True, seed=0)
    cert = sweep.certificate()
    assert cert.certificates == (None, None, None) and cert.best_index is None and sweep.stop_reason is None
    assert json.loads(json.dumps(cert.to_dict()))["certificates"] == [None, None, None]


def test_stop_during_the_first_sigma_ends_within_one_batch_and_starts_no_later_sigma():
    base, x = _oracle()
    holder = {}

    def hook(k):  # forward 1 = the probe, 2 = selection, 3.. = estimation batches of σ 1; stop in the 5th
        if k == 5:
            holder["sweep"].stop()

    model = CallbackModel(base, hook).eval()
    sweep = holder["sweep"] = SigmaSweepStream(model, x, SIGMAS, n0=20, n_max=10**6, alpha=0.01, batch_size=100,
                                               best=True, seed=0)
    snaps = list(sweep)
    assert model.calls == 5  # the batch in flight finished, then nothing: no later σ was even built
    assert {s.stage for s in snaps} == {1} and snaps[-1].inner.stop_reason == "stopped"
    cert = sweep.certificate()
    first = cert.certificates[0]
    assert first.stop_reason == "stopped" and first.n == 300 and first.counts.sum() == 300
    assert cert.certificates[1:] == (None, None) and sweep.stop_reason == "stopped"
    assert cert.best_index in (None, 0)  # chosen among the σ that ran; still at α/k each
    assert first.alpha == pytest.approx(0.01 / 3)


def test_stop_between_two_sigmas_starts_no_later_sigma():
    model, x = _oracle()
    sweep = SigmaSweepStream(model, x, SIGMAS, n0=20, n_max=200, batch_size=100, seed=0)
    for snap in sweep:
        if snap.inner.done:  # σ 1 ended at n_max: stop before σ 2 is built
            sweep.stop()
    cert = sweep.certificate()
    assert cert.certificates[0].stop_reason == "n_max" and cert.certificates[1:] == (None, None)
    assert sweep.stop_reason == "stopped"


def test_stop_during_the_next_sigmas_shape_probe_starts_it_not():
    """stop() called while σ 2's stream is being built (its shape probe, in the sweep's own thread):
    no deadlock, and σ 2 draws no sample."""
    base, x = _oracle()
    holder = {}

    def hook(k):  # 1 = σ 1's probe, 2 = selection, 3–4 = estimation, 5 = σ 2's probe
        if k == 5:
            holder["sweep"].stop()

    model = CallbackModel(base, hook).eval()
    sweep = holder["sweep"] = SigmaSweepStream(model, x, SIGMAS, n0=20, n_max=200, batch_size=100, seed=0)
    assert [s.stage for s in sweep] == [1, 1, 1] and model.calls == 5
    cert = sweep.certificate()
    assert cert.certificates[0].n == 200 and cert.certificates[1:] == (None, None)
    assert sweep.stop_reason == "stopped"


def test_stop_before_the_sweep_starts_draws_nothing():
    model = RecordingModel().eval()
    sweep = SigmaSweepStream(model, torch.zeros(1, 2, 2), SIGMAS, n0=20, n_max=200, seed=0)
    sweep.stop()
    assert list(sweep) == []
    assert [t.shape[0] for t in model.seen] == [1]  # σ 1's shape probe only
    assert sweep.certificate().certificates == (None, None, None) and sweep.stop_reason == "stopped"


def test_the_sweep_runs_as_a_live_job_and_stops_from_another_thread():
    from rs_core.smoothing.jobs import LiveSnapshot, LiveStream, Scheduler

    model, x = _oracle()
    sweep = SigmaSweepStream(model, x, SIGMAS, n0=20, n_max=10**7, alpha=0.01, batch_size=200, best=True, seed=0)
    assert isinstance(sweep, LiveStream) and sweep.device == torch.device("cpu")
    job = Scheduler(max_running=1).submit(sweep)
    assert job.wait_for_votes(timeout=300)
    job.stop()
    assert job.wait(timeout=300) and job.error is None
    assert isinstance(job.snapshot, LiveSnapshot) and job.snapshot.stage == 1 and job.snapshot.stages == 3
    cert = job.certificate
    assert isinstance(cert, SweepCertificate) and cert.certificates[1:] == (None, None)
    assert cert.certificates[0].stop_reason == "stopped" and cert.certificates[0].n < 10**7
    assert {p.stage for p in job.history} == {1}


# --- the best index --------------------------------------------------------------------------------

def _cert(prediction: int, radius: float, sigma: float) -> Certificate:
    return Certificate(prediction=prediction, radius=radius, p_lower=0.9 if prediction != ABSTAIN else 0.4,
                       counts=np.array([1, 9]), counts_selection=np.array([0, 5]), sigma=sigma, alpha=0.001, n0=5,
                       n=10, seed=0, device="cpu", batch_size=10, elapsed_s=0.0, bound="anytime-beta-mixture")


def test_best_index_is_the_largest_certified_radius_ties_to_the_smaller_sigma_index():
    sigmas = (0.25, 0.5, 1.0, 2.0)

    def sweep(certs, best=True):
        return SweepCertificate(sigmas, tuple(certs), 0.004, 0.001 if best else 0.004, best, 7)

    a, b = _cert(1, 0.3, 0.25), _cert(1, 0.7, 0.5)
    tie, abstain = _cert(0, 0.7, 1.0), _cert(ABSTAIN, 0.0, 2.0)
    assert sweep([a, b, tie, abstain]).best_index == 1
    assert sweep([a, tie, b, abstain]).best_index == 1  # a tie goes to the smaller index, whatever the class
    assert sweep([abstain, a, None, None]).best_index == 1
    assert sweep([abstain, abstain, abstain, abstain]).best_index is None
    assert sweep([None, None, None, None]).best_index is None
    assert sweep([a, b, tie, abstain], best=False).best_index is None
    d = json.loads(json.dumps(sweep([a, b, None, abstain]).to_dict()))
    assert d["best_index"] == 1 and d["certificates"][2] is None and d["certificates"][1]["radius"] == 0.7
    with pytest.raises(AttributeError):
        sweep([a, b, tie, abstain]).alpha = 0.5  # frozen


# --- soundness of the best σ against its exact law -------------------------------------------------

def _oracle_threshold(p: float, n: int, alpha: float) -> int:
    """The smallest count k with M_n(p) ≥ 1/α for one look at n samples (n + 1 if none), confirmed by
    the independent oracle (tests/oracles.py integrates the mixture with mpmath)."""
    m = DEFAULT_MIXTURE

    def guess(nn):
        k = np.arange(nn + 1)
        ok = log_mixture_martingale(k, nn, p, m) >= math.log(1 / alpha)
        return int(np.argmax(ok)) if ok.any() else nn + 1

    return crossing_thresholds(p, 1, n, alpha, m.a, m.b, m.floor, guess=guess)[0]


def best_sigma_failure_law(p_as, n0: int, n: int, alpha_each: float) -> tuple[float, float]:
    """Exact bounds [lower, upper] on P(the best σ's certificate is wrong) for a sweep with one look
    (n_max = batch_size = n) on a two-class oracle whose class 1 has probability p_as[i] at σ i.

    At σ i, class 1 is selected on a strict majority of n0 votes (probability s_i) and its certificate is
    false (radius above the true radius ⟺ p_lower > p_a ⟺ M_n(p_a) ≥ 1/α: Ville's event at one look)
    with probability a_i = s_i P(K ≥ t_i); class 0 is certified at all with probability
    b_i = (1 − s_i) P(K' ≥ t'_i), K' its votes, t'_i the threshold at ½. The σ's draw independent noise.
    "Some class-1 certificate is false" makes the largest radius false, so P(wrong) ≥ 1 − Π(1 − a_i); the
    best is right when no certificate is false, so P(wrong) ≤ 1 − Π(1 − a_i − b_i).
    """
    a, b = [], []
    for p in p_as:
        s = stats.binom.sf(n0 // 2, n0, p)
        a.append(s * stats.binom.sf(_oracle_threshold(p, n, alpha_each) - 1, n, p))
        b.append((1 - s) * stats.binom.sf(_oracle_threshold(0.5, n, alpha_each) - 1, n, 1 - p))
    a, b = np.array(a), np.array(b)
    return float(1 - np.prod(1 - a)), float(1 - np.prod(1 - a - b))


@pytest.mark.slow
def test_the_best_sigma_is_wrong_at_most_alpha_and_follows_its_exact_law():
    """Best mode on a linear oracle, whose smoothed classifier is f and whose true radius R is the same
    at every σ: the σ's are set so that each pA = Φ(R/σ) lies just below the largest bound that n votes
    out of n give — at α/k for the two large σ, at α only for the two small ones. So the picked σ is
    wrong at most α (at α/k per σ), and at the full α per σ it would be wrong with probability ≈ 1.6 α."""
    alpha, n0, n, runs = 0.2, 30, 10, 1000
    sigmas = (0.5, 0.52, 0.82, 0.85)
    w = torch.tensor([1.0, -2.0, 0.5, 1.5], dtype=torch.float64)
    x = torch.full((1, 2, 2), 0.5)
    radius = 0.48
    model = LinearOracle(w, radius * float(w.norm()) - float(w @ x.flatten().double())).eval()
    assert model.true_class(x) == 1 and model.true_radius(x) == pytest.approx(radius, rel=1e-12)
    true_radius = model.true_radius(x)
    p_as = [model.p_a(x, s) for s in sigmas]

    wrong = 0
    for seed in range(runs):
        cert = SigmaSweepStream(model, x, sigmas, n0, n, alpha, n, best=True, seed=seed).run()
        assert [c.n for c in cert.certificates] == [n] * 4
        i = cert.best_index
        if i is not None:
            best = cert.certificates[i]
            wrong += best.prediction != 1 or best.radius > true_radius

    k = len(sigmas)
    lower, upper = best_sigma_failure_law(p_as, n0, n, alpha / k)
    lower_full, _ = best_sigma_failure_law(p_as, n0, n, alpha)
    print(f"best σ wrong: observed {wrong / runs:.4f}, exact law [{lower:.4f}, {upper:.4f}] at α/k, "
          f"{lower_full:.4f} at α per σ")
    assert upper <= alpha  # Bonferroni, checked exactly
    # The picked certificate is wrong at most α (one-sided exact test) …
    assert stats.binomtest(wrong, runs, alpha, alternative="greater").pvalue > 1e-4, (wrong / runs, alpha)
    # … as often as the exact law says …
    assert stats.binomtest(wrong, runs, lower, alternative="less").pvalue > 1e-4, (wrong / runs, lower)
    assert stats.binomtest(wrong, runs, upper, alternative="greater").pvalue > 1e-4, (wrong / runs, upper)
    # … and the test has power: without the split (α per σ) the law is far above α, and would be rejected.
    assert lower_full > 1.5 * alpha
    assert stats.binomtest(round(lower_full * runs), runs, alpha, alternative="greater").pvalue < 1e-6


class _Constant(nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.zeros(x.shape[0], 3)
        out[:, self.k] = 1.0
        return out + 0 * self.w


def test_per_sigma_models_certify_each_sigma_with_its_own_expert():
    """Dual RS's comparison: each σ certified by its own expert (here one constant class per σ)."""
    x = torch.zeros(1, 2, 2)
    sweep = SigmaSweepStream(_Constant(0).eval(), x, [0.25, 0.5], n0=50, n_max=500, alpha=0.01, batch_size=250,
                             seed=0, models={0.25: _Constant(1).eval(), 0.5: _Constant(2).eval()})
    certs = sweep.run().certificates
    assert [c.prediction for c in certs] == [1, 2]
    with pytest.raises(ValueError, match="models: need one model per σ"):
        SigmaSweepStream(_Constant(0).eval(), x, [0.25, 0.5], models={0.25: _Constant(1).eval()})


def test_the_sweep_gives_the_same_certificates_for_any_batch_sizes_and_time_sized_batches():
    """Every σ's votes and bound, and the best σ, are the same at batch sizes 1, 7, 64, 1,000 and with batches
    sized by time (15 values per input: a size where torch's own randn is not split-invariant)."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 5, generator=g)
    model = nn.Sequential(nn.Flatten(), nn.Linear(15, 3)).eval()
    with torch.no_grad():
        model[1].weight.normal_(0.0, 1.0, generator=g)
        model[1].bias.copy_(torch.tensor([2.0, 0.0, 0.0]) - model[1].weight @ x.flatten())
    runs = [SigmaSweepStream(model, x, (0.25, 0.5), 20, 300, 0.01, b, best=True, seed=3).run() for b in (1, 7, 64, 1000)]
    runs.append(SigmaSweepStream(model, x, (0.25, 0.5), 20, 300, 0.01, 1000, best=True, seed=3,
                                 batch_seconds=0.01).run())

    def key(sweep):
        return [sweep.best_index] + [(c.prediction, c.radius, c.counts.tolist(), c.counts_selection.tolist())
                                     for c in sweep.certificates]

    assert runs[0].best_index is not None and all(key(r) == key(runs[0]) for r in runs[1:])
