"""Smooth: one object holds (model, σ, batch size, autocast), validates once, and runs every algorithm."""

import numpy as np
import pytest
import torch
from oracles import make_oracle
from torch import nn

import rs_core.checks
import rs_core.smoothing.smooth
from rs_core import CertifyStream, Smooth, certify, certify_many, predict_result, sample_counts
from rs_core.dual.smooth import DualSmooth


def test_methods_equal_the_module_functions_for_the_same_seed():
    model, x = make_oracle(0.9, 0.5)
    g = Smooth(model, 0.5, batch_size=300)
    a, b = g.certify(x, 50, 2000, 0.01, seed=4), certify(model, x, 0.5, 50, 2000, 0.01, 300, seed=4)
    assert a.radius == b.radius and a.seed == b.seed == 4
    np.testing.assert_array_equal(a.counts, b.counts)
    many = g.certify_many(x.expand(3, -1, -1, -1), 20, 500, 0.01, seed=1)
    ref = certify_many(model, x.expand(3, -1, -1, -1), 0.5, 20, 500, 0.01, 300, seed=1)
    assert [c.counts.tolist() for c in many] == [c.counts.tolist() for c in ref]
    p = g.predict_result(x, 400, 0.01, seed=2)
    np.testing.assert_array_equal(p.counts, predict_result(model, x, 0.5, 400, 0.01, 300, seed=2).counts)
    assert g.predict(x, 400, 0.01, seed=2) == p.prediction
    np.testing.assert_array_equal(g.sample_counts(x, 700, seed=9), sample_counts(model, x, 0.5, 700, 300, seed=9))
    assert g.sample_counts(x.expand(2, -1, -1, -1), 10, seed=0).shape == (2, 2)
    s1 = g.stream(x, 50, 900, 0.01, seed=3).run()
    s2 = CertifyStream(model, x, 0.5, 50, 900, 0.01, 300, seed=3).run()
    assert s1.p_lower == s2.p_lower and s1.counts.tolist() == s2.counts.tolist()


def test_model_sigma_batch_and_autocast_are_checked_once_at_construction(monkeypatch):
    model, x = make_oracle(0.9, 0.5)
    calls = []
    real = rs_core.checks.check_sigma
    monkeypatch.setattr(rs_core.smoothing.smooth, "check_sigma", lambda *a, **k: calls.append(a) or real(*a, **k))
    g = Smooth(model, 0.5, 100)
    assert len(calls) == 1
    g.certify(x, 10, 200, 0.01, seed=0)
    g.predict(x, 100, 0.01, seed=0)
    g.stream(x, 10, 200, 0.01, seed=0).run()
    assert len(calls) == 1  # the methods trust what the constructor checked


@pytest.mark.parametrize("kwargs, name", [
    (dict(model="not a model"), "model"), (dict(sigma=0.0), "sigma"), (dict(sigma=float("nan")), "sigma"),
    (dict(batch_size=0), "batch_size"), (dict(autocast="fp8"), "autocast"),
])
def test_bad_construction_names_the_parameter(kwargs, name):
    model, _ = make_oracle(0.9, 0.5)
    args = dict(model=model, sigma=0.5, batch_size=100) | kwargs
    with pytest.raises(ValueError, match=f"^{name}:"):
        Smooth(args.pop("model"), **args)


def test_a_model_in_training_mode_is_refused():
    with pytest.raises(ValueError, match="^model:.*training mode"):
        Smooth(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), 0.5)


@pytest.mark.parametrize("call, name", [
    (lambda g, x: g.certify(x, n0=0), "n0"), (lambda g, x: g.certify(x, n=0), "n"),
    (lambda g, x: g.certify(x, alpha=1.0), "alpha"), (lambda g, x: g.predict(x, n=0), "n"),
    (lambda g, x: g.stream(x, n_max=0), "n_max"), (lambda g, x: g.certify(x[None]), "x"),
    (lambda g, x: g.certify(x, seed=-1), "seed"), (lambda g, x: g.sample_counts(x, 0), "num"),
])
def test_bad_call_arguments_name_themselves(call, name):
    model, x = make_oracle(0.9, 0.5)
    with pytest.raises(ValueError, match=f"^{name}:"):
        call(Smooth(model, 0.5, 100), x)


class OOMOnce(nn.Module):
    """Raises CUDA-style out-of-memory for batches above 64, to exercise the halving path on the CPU."""

    def forward(self, x):
        if x.shape[0] > 64:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return torch.zeros(x.shape[0], 2)


def test_a_batch_size_that_did_not_fit_is_remembered():
    g = Smooth(OOMOnce().eval(), 0.5, batch_size=256)
    cert = g.certify(torch.zeros(1, 2, 2), 10, 300, 0.01, seed=0)
    assert cert.counts.sum() == 300 and cert.batch_size == 64 and g.batch_size == 64


def test_dual_smooth_holds_one_smooth_per_stage():
    model, x = make_oracle(0.9, 0.5)
    dual = DualSmooth(model, {0.5: model, 0.25: model}, sigma_e=1.0, batch_size=128)
    assert dual.sigmas == (0.25, 0.5) and dual.estimator.sigma == 1.0
    assert [s.sigma for s in dual.experts.values()] == [0.25, 0.5]
    assert all(isinstance(s, Smooth) and s.batch_size == 128 for s in (dual.estimator, *dual.experts.values()))


def test_data_set_rows_do_not_depend_on_the_batch_size_or_the_packing():
    """certify_examples packs examples whose n0 + n fit twice in a batch; each still draws from its own seed, so the
    rows at batch 50 (one example a batch), 400 (four) and 1,000 (ten) are the rows of CERTIFY run on each alone."""
    g = torch.Generator().manual_seed(0)
    xs = torch.rand(12, 3, 5, 5, generator=g)  # 75 elements: torch's randn itself is not split-invariant there
    model = nn.Sequential(nn.Flatten(), nn.Linear(75, 3)).eval()
    with torch.no_grad():
        model[1].weight.normal_(0.0, 0.3, generator=g)
    examples = [(10 * i, x, i % 3) for i, x in enumerate(xs)]
    rows = {b: [row[:5] for row in Smooth(model, 0.5, b).certify_examples(examples, 10, 40, 0.01, seed=5)]
            for b in (50, 400, 1000)}
    assert Smooth(model, 0.5, 1000).examples_per_group(10, 40) == 10
    alone = [Smooth(model, 0.5, 50).certify(x, 10, 40, 0.01, seed=5 + idx) for idx, x, _ in examples]
    assert rows[50] == rows[400] == rows[1000]
    assert [(r[2], r[3]) for r in rows[1000]] == [(c.prediction, c.radius) for c in alone]
    assert len({r[3] for r in rows[1000]}) > 3  # radii that differ: the comparison is not between constants
