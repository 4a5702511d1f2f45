"""rs_core/smoothing/adaptive.py: adaptive CERTIFY at listed radii follows its exact law on the linear oracle (false
certificates ≤ α at a data-dependent stopping time), and refilled batches give each input exactly its own votes."""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from oracles import Switch, make_oracle
from scipy import stats
from torch import nn

from rs_core import ABSTAIN
from rs_core.data import data_dir
from rs_core.logs.certify_logs import read_certify_log
from rs_core.models.checkpoints import CHECKPOINTS_DIR
from rs_core.smoothing.adaptive import UPPER_MIXTURE, RadiusCertifier, check_radii
from rs_core.smoothing.stats import DEFAULT_MIXTURE, anytime_lower_bound_complement

# The exact laws ask for the same bounds over and over (both classes, every level, the forecast at n_max).
_bound = functools.cache(anytime_lower_bound_complement)


def _schedule(first: int, growth: float, max_chunk: int, n_max: int) -> list[int]:
    """The sample counts at which the bound is read (the chunk rule, restated from the docstring)."""
    out, n = [], 0
    while n < n_max:
        n += min(max(first, math.ceil(growth * n)), max_chunk, n_max - n)
        out.append(n)
    return out


def exact_adaptive_law(p: float, sigma: float, radii, n0: int, n_max: int, alpha: float, futility_alpha: float,
                       first: int, growth: float, max_chunk: int):
    """Exact law of adaptive CERTIFY on a two-class linear oracle whose true class (1) has probability p, by
    dynamic programming over (votes for c_A, level reached, false so far) at each reading of the bound.

    Returns P(false certificate) — another class certified, or class 1 with σΦ⁻¹(max L) above the true radius
    (⟺ max L > p) —, the distribution of the reported level (index 0 = abstain … K + 1) and E[samples].
    """
    q_levels = np.array([0.5, *stats.norm.sf(np.array(radii) / sigma)])
    top = len(q_levels) - 1
    sel_1 = stats.binom.sf(n0 // 2, n0, p)  # argmax picks class 1 only on a strict majority
    levels = np.zeros(top + 2)
    false_total, samples = 0.0, 0.0
    for p_top, weight, wrong_class in [(p, sel_1, False), (1 - p, 1 - sel_1, True)]:
        # mass[level + 1, flag, k]
        mass = np.zeros((top + 2, 2, 1))
        mass[0, 0, 0] = weight
        prev = 0
        for n in _schedule(first, growth, max_chunk, n_max):
            chunk = n - prev
            pmf = stats.binom.pmf(np.arange(chunk + 1), chunk, p_top)
            new = np.zeros((top + 2, 2, n + 1))
            for lv in range(top + 2):
                for fl in range(2):
                    if mass[lv, fl].any():
                        new[lv, fl] = np.convolve(mass[lv, fl], pmf)
            mass = np.zeros_like(new)
            ks = np.arange(n + 1)
            q_low = np.array([_bound(int(k), n, alpha, DEFAULT_MIXTURE) for k in ks])
            p_up = np.array([_bound(int(n - k), n, futility_alpha, UPPER_MIXTURE) for k in ks])
            lvl_now = (q_low[:, None] <= q_levels[None, :]).sum(1) - 1
            false_now = (q_low < 1 - p_top) if not wrong_class else (lvl_now >= 0)
            for lv in range(top + 2):
                for fl in range(2):
                    m = new[lv, fl]
                    for k in np.nonzero(m)[0]:
                        level = max(lv - 1, int(lvl_now[k]))
                        flag = fl or bool(false_now[k])
                        stop = level == top or n >= n_max
                        if not stop:
                            q_next = q_levels[level + 1]
                            k_best = min(k + (n_max - n), math.floor(p_up[k] * n_max))
                            stop = p_up[k] < 1 - q_next or _bound(int(k_best), n_max, alpha, DEFAULT_MIXTURE) > q_next
                        if stop:
                            levels[level + 1] += m[k]
                            false_total += m[k] * flag
                            samples += m[k] * (n0 + n)
                        else:
                            mass[level + 1, int(flag), k] += m[k]
            prev = n
        assert mass.sum() < 1e-12
    return false_total, levels, samples


CONFIG = {"sigma": 0.5, "radii": (0.25, 0.5), "n0": 10, "n_max": 600, "alpha": 0.05, "futility_alpha": 0.05,
          "first": 32, "growth": 0.25, "max_chunk": 128}


def _certifier(model, batch_size: int, **over) -> RadiusCertifier:
    c = CONFIG | over
    return RadiusCertifier(model, c["sigma"], c["radii"], c["n0"], c["n_max"], c["alpha"], batch_size,
                           first_chunk=c["first"], growth=c["growth"], max_chunk=c["max_chunk"],
                           futility_alpha=c["futility_alpha"])


@pytest.mark.parametrize(("true_r", "over", "repeats"), [
    (0.48, {}, 3000),  # just below the listed 0.5, where a false certificate at r = 0.5 is most likely
    # p_A = 0.57: the selection picks the wrong class often, so reusing its votes would show.
    (0.09, {"radii": (0.05, 0.1), "n0": 20}, 3000),
    # The certificate at α = 0.001, the futility rule at 0.2: the two levels told apart. Exact law: P(false
    # certificate) = 5.5e-5, E[samples] = 306 (sd 91). By the same dynamic programme, the certificate's bound read at
    # 0.2 gives P(false) = 0.0101 (> α; the count's test at 1e-4 rejects it with probability 0.9976 at 1000 repeats)
    # and E[samples] = 229; the futility bound read at α gives E[samples] = 386. Either mean lies over 20 standard
    # errors (≤ 3.2 samples) from 306, where the test allows 5.
    pytest.param(0.48, {"alpha": 0.001, "futility_alpha": 0.2}, 1000, marks=pytest.mark.slow, id="futility_alpha"),
])
def test_adaptive_false_certificates_follow_their_exact_law(true_r, over, repeats):
    config = CONFIG | over
    p = float(stats.norm.cdf(true_r / config["sigma"]))
    model, x = make_oracle(p, config["sigma"])
    assert model.true_radius(x) == pytest.approx(true_r, rel=1e-9)
    certs = [c for _, c in _certifier(model, 4096, **over).certify_stream((i, x, 10_000 + i) for i in range(repeats))]
    false = sum((c.prediction not in (ABSTAIN, 1)) or (c.prediction == 1 and c.radius_anytime > true_r)
                for c in certs)
    q, levels, mean_samples = exact_adaptive_law(p, **config)
    assert q <= config["alpha"]
    assert stats.binomtest(false, repeats, q).pvalue > 1e-4
    # The whole law: levels reported (abstain, class, r₁, r₂) and the samples used.
    observed = np.bincount([c.level + 1 for c in certs], minlength=len(levels))
    keep = levels * repeats >= 5
    chi2 = (((observed - levels * repeats) ** 2 / np.where(keep, levels * repeats, 1))[keep]).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4, (observed, levels * repeats)
    used = np.array([c.samples for c in certs])
    assert abs(used.mean() - mean_samples) < 5 * used.std() / math.sqrt(repeats)
    assert all(c.n0 + c.n == c.samples and c.samples <= config["n0"] + config["n_max"] for c in certs)


class ShareVotes(nn.Module):
    """Votes class 1 on the rows i of every batch with i mod 10 < share and class 0 on the others, whatever the input:
    certifying one input with batches longer than any chunk, each forward pass is one chunk, so the votes at every
    reading of the bound are known in advance."""

    def __init__(self, share: int) -> None:
        super().__init__()
        self.share = share
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        rows = torch.arange(x.shape[0], device=x.device)
        return nn.functional.one_hot((rows % 10 < self.share).long(), 2).to(x.dtype)


def _restated_stop(ks: list[int], ns: list[int], q_levels: np.ndarray, n_max: int, alpha: float,
                   futility_alpha: float) -> tuple[int, str, int, float, float]:
    """The stop the module docstring's rules give for ks[t] votes for c_A of ns[t] at the readings of the bound:
    (n, reason, level, p_lower, p_upper), the lower bound at α (running max), the futility rule's upper bound at
    futility_alpha."""
    top, q_lower = len(q_levels) - 1, 1.0
    for k, n in zip(ks, ns, strict=True):
        q_lower = min(q_lower, anytime_lower_bound_complement(k, n, alpha, DEFAULT_MIXTURE))
        p_upper = anytime_lower_bound_complement(n - k, n, futility_alpha, UPPER_MIXTURE)
        level = int(np.sum(q_lower <= q_levels)) - 1
        if level == top or n >= n_max:
            return n, "top_radius" if level == top else "n_max", level, 1 - q_lower, p_upper
        q_next = q_levels[level + 1]
        k_best = min(k + n_max - n, math.floor(p_upper * n_max))  # p_A at its upper bound, forecast to n_max
        if p_upper < 1 - q_next or anytime_lower_bound_complement(k_best, n_max, alpha, DEFAULT_MIXTURE) > q_next:
            return n, "futile", level, 1 - q_lower, p_upper
    raise AssertionError("the schedule ends at n_max")


@pytest.mark.parametrize(("alpha", "futility_alpha"), [(0.001, 0.2), (0.2, 0.001)])
def test_the_futility_rule_gives_up_at_its_own_level_and_the_certificate_keeps_alpha(alpha, futility_alpha):
    """Deterministic votes (8 in 10 for class 1): r = 0.25 (needs p_A > 0.69) is certified and r = 0.5 (needs
    p_A > 0.84) is out of reach, so the input is given up on at the first reading where the futility rule fires —
    a sample count that depends on futility_alpha, and differs when the rule reads its bound at α."""
    sigma, radii, n0, n_max, first, growth, max_chunk = 0.5, (0.25, 0.5), 10, 10_000, 64, 0.25, 4096
    share = 8
    model = ShareVotes(share).eval()
    c = RadiusCertifier(model, sigma, radii, n0, n_max, alpha, batch_size=max_chunk, first_chunk=first,
                        growth=growth, max_chunk=max_chunk, futility_alpha=futility_alpha).certify(
        torch.zeros(1, 2, 2), seed=0)
    ns = _schedule(first, growth, max_chunk, n_max)
    chunks = np.diff([0, *ns]).tolist()
    ks = np.cumsum([share * (m // 10) + min(m % 10, share) for m in chunks]).tolist()  # class-1 votes so far
    q_levels = np.array([0.5, *stats.norm.sf(np.array(radii) / sigma)])
    n, reason, level, p_lower, p_upper = _restated_stop(ks, ns, q_levels, n_max, alpha, futility_alpha)
    assert (reason, level) == ("futile", 1) and n < n_max
    looks = ns.index(n) + 1
    # The test tells the levels apart: read at α, the futility bound would stop at another reading (α = 0.001,
    # futility_alpha = 0.2: n = 500 here, 1223 at α; swapped: 1529, 625 at α); the certificate's bound read at
    # futility_alpha would be another number.
    assert _restated_stop(ks, ns, q_levels, n_max, alpha, alpha)[0] != n
    p_lower_wrong = 1 - min(anytime_lower_bound_complement(k, m, futility_alpha) for k, m in zip(ks[:looks], ns))
    assert p_lower_wrong != pytest.approx(p_lower, rel=1e-3)
    assert (c.prediction, c.level, c.radius, c.stop_reason, c.n) == (1, level, radii[0], "futile", n)
    assert model.sizes == [1, n0, *chunks[:looks]]  # the probe, the selection, one pass per chunk
    assert c.counts.tolist() == [n - ks[looks - 1], ks[looks - 1]]
    assert c.p_lower == pytest.approx(p_lower, rel=1e-9) and c.p_upper == pytest.approx(p_upper, rel=1e-9)


def test_refilled_batches_give_each_input_its_own_votes():
    """Packing is invisible: an input certified among others, with any batch size, with or without refilling,
    gets the same votes and certificate as alone."""
    torch.manual_seed(0)
    # 3×3 images: 9 numbers per sample, so that pieces of a chunk drawn separately would not line up with
    # torch's 16-number blocks of normal draws (a packing-dependent draw shows).
    model = nn.Sequential(nn.Flatten(), nn.Linear(9, 3)).eval()
    xs = [torch.rand(1, 3, 3) for _ in range(12)]
    inputs = [(i, x, 100 + i) for i, x in enumerate(xs)]
    runs = [dict(_certifier(model, b).certify_stream(inputs, refill=r)) for b, r in [(4096, True), (50, True),
                                                                                   (777, False), (33, True)]]
    alone = {i: _certifier(model, 64).certify(x, seed=100 + i) for i, x in enumerate(xs)}
    for run in runs:
        assert sorted(run) == list(range(12))
        for i, c in run.items():
            a = alone[i]
            assert np.array_equal(c.counts, a.counts) and np.array_equal(c.counts_selection, a.counts_selection)
            assert (c.prediction, c.level, c.n, c.stop_reason, c.p_lower) == \
                (a.prediction, a.level, a.n, a.stop_reason, a.p_lower)
    assert len({c.n for c in alone.values()}) > 1  # inputs stop at different times, so slots were refilled


def test_the_class_comes_from_the_selection_votes_which_never_enter_the_bound():
    c = RadiusCertifier(Switch().eval(), 0.5, [0.25], n0=30, n_max=500, alpha=0.01, batch_size=30).certify(
        torch.zeros(1, 2, 2), seed=0)
    assert c.counts_selection.tolist() == [0, 30]
    assert c.counts[1] == 0 and c.counts[0] == c.n  # no selection vote counted again
    assert c.prediction == ABSTAIN and c.level == -1 and c.stop_reason == "futile" and c.p_lower == 0.0


def test_easy_inputs_stop_early_and_hard_ones_use_the_budget():
    model, x = make_oracle(0.999999, 0.5)  # true radius 2.38: r = 0.5 certified after a few hundred samples
    c = _certifier(model, 1000, n_max=100_000, alpha=0.001).certify(x, seed=0)
    assert (c.prediction, c.level, c.radius, c.stop_reason) == (1, 2, 0.5, "top_radius") and c.samples < 1000
    assert c.radius_anytime >= c.radius
    model, x = make_oracle(0.6, 0.5)  # true radius 0.127: the class, not r = 0.25 (needs p_A > 0.69)
    c = _certifier(model, 1000, n_max=100_000, alpha=0.001).certify(x, seed=0)
    assert (c.prediction, c.level, c.radius, c.stop_reason) == (1, 0, 0.0, "futile") and c.samples < 5000
    assert 0 < c.radius_anytime < 0.127
    # True radius 0.248, just short of 0.25: no budget could separate them; the forecast (even p_A at its upper
    # bound would leave the bound at n_max below Φ(0.5)) gives up well before n_max.
    model, x = make_oracle(0.69, 0.5)
    c = _certifier(model, 1000, n_max=20_000, alpha=0.001).certify(x, seed=0)
    assert (c.level, c.stop_reason) == (0, "futile") and c.n < 10_000


@pytest.mark.parametrize(("radii", "message"), [
    ([], "give at least one"), ([0.5, 0.25], "strictly increasing"), ([0.25, 0.25], "strictly increasing"),
    ([0, 0.5], "finite and > 0"), ([-1.0], "finite and > 0"), ([float("nan")], "finite and > 0"),
    (["a"], "must be numbers"), (None, "must be numbers"),
])
def test_bad_radii_are_refused_by_name(radii, message):
    with pytest.raises(ValueError, match=f"^radii: .*{message}"):
        check_radii(radii)
    with pytest.raises(ValueError, match="^radii: "):
        RadiusCertifier(nn.Flatten().eval(), 0.5, radii)


ROOT = Path(__file__).resolve().parents[1]
MODEL = str(CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar")
needs_mnist = pytest.mark.skipif(not (data_dir() / "mnist" / "MNIST" / "raw").exists(),
                                 reason=f"no MNIST under RS_DATA_DIR={data_dir()}")


@pytest.mark.slow
@needs_mnist
def test_cli_certify_with_radii_logs_levels_and_samples_and_resumes(tmp_path):
    out = tmp_path / "log"
    cmd = [sys.executable, "-m", "rs_core", "certify", "mnist", MODEL, "0.5", str(out), "--skip", "2000",
           "--radii", "0.25", "0.5", "1.0", "--N-max", "20000", "--no-progress"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    log = read_certify_log(out)
    side = [line.split("\t") for line in (tmp_path / "log.radii.tsv").read_text().splitlines()]
    assert side[0] == ["idx", "label", "predict", "radius", "radius_anytime", "samples", "stop"]
    assert log.idx.tolist() == [0, 2000, 4000, 6000, 8000] == [int(r[0]) for r in side[1:]]
    for row, radius in zip(side[1:], log.radius, strict=True):
        assert float(row[3]) == radius and float(row[3]) in (0.0, 0.25, 0.5, 1.0)
        assert float(row[4]) >= float(row[3]) and 100 < int(row[5]) <= 100 + 20_000
        assert row[6] in ("top_radius", "futile", "n_max")
    record = json.loads((tmp_path / "log.meta.json").read_text())
    assert record["radii"] == [0.25, 0.5, 1.0] and record["N_max"] == 20_000
    before = out.read_text()
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    assert again.returncode == 0 and "5 of 5 examples already done" in again.stderr and out.read_text() == before
    other = subprocess.run(cmd[:-7] + ["--radii", "0.25", "0.5", "--N-max", "20000"], capture_output=True,
                           text=True, cwd=ROOT, check=False)
    assert other.returncode == 2 and "error: resume: log was made with other settings (radii was" in other.stderr
    bad = subprocess.run(cmd[:-7] + ["--radii", "0.5", "0.25"], capture_output=True, text=True, cwd=ROOT, check=False)
    assert bad.returncode == 2 and "error: radii: must be strictly increasing" in bad.stderr
