"""rs_core.attacks: the attack on the smoothed classifier g, against exact oracles.

The half-plane f(x) = 1[w·x > b] (rs_core.smoothing.playground.HalfPlane) is its own smoothed classifier: g = f,
and g's boundary is at the exact distance |w·x − b| in the direction ±w (Cohen et al. App. B).
"""

from __future__ import annotations

import math
import threading

import pytest
import torch
from torch import nn

from rs_core import certify, predict
from rs_core.attacks import AttackRun, attack_seed, attack_smoothed, has_gradients
from rs_core.smoothing.playground import HalfPlane
from rs_core.smoothing.seeding import make_generator, predict_seed

ANGLE = 0.6


def _point(margin: float, f: HalfPlane) -> torch.Tensor:
    """A point of class 0 at signed distance −margin from f's boundary, as the [1, 1, 2] input rs_core models take."""
    return (-margin * f.w).float().view(1, 1, 2)


def test_on_the_half_plane_the_attack_finds_gs_boundary_within_2_percent_in_the_exact_direction():
    # D = 2, σ = 0.1. PREDICT with n = 10,000 at α = 0.001 names class 1 once pA ≳ 0.52, i.e. δ ≈ σ·Φ⁻¹(0.52) =
    # 0.005 beyond the boundary; the bisection ends within eps_max/1024 = 0.003 of it and the confirmation grows
    # the candidate by 1 % a try: together well under 2 % of D.
    f = HalfPlane(angle=ANGLE, offset=0.0)
    x = _point(2.0, f)
    r = attack_smoothed(f, x, 0.1, eps_max=3.0, steps=100, n_predict=10_000, clip=None, seed=3)
    assert r.found and r.clean_prediction == 0 and r.adv_prediction == 1 and r.method == "pgd"
    assert 2.0 <= r.distance <= 2.0 * 1.02
    step = (r.x_adv - x).flatten().double()
    assert float(step @ f.w) / float(step.norm()) > 0.99  # along +w, the exact direction to the boundary


def test_the_found_distance_is_never_below_certifys_radius_over_many_seeds():
    """With CERTIFY and PREDICT sound, D < R needs one of them wrong (probability ≤ 2α each run). A CERTIFY that
    inflates its radii (a planted bug, tests/mutation_check.py) certifies beyond g's boundary and fails here."""
    f = HalfPlane(angle=ANGLE, offset=0.0)
    x = _point(0.6, f)
    for seed in range(8):
        cert = certify(f, x, 0.5, 100, 2000, 0.001, 2000, seed=seed)
        r = attack_smoothed(f, x, 0.5, eps_max=3.0, steps=60, m=64, n_predict=2000, clip=None, seed=seed)
        assert r.found and cert.prediction == r.clean_prediction == 0
        assert r.distance >= cert.radius, (seed, r.distance, cert.radius)


def test_the_adversarial_point_is_classified_otherwise_by_an_independent_predict():
    f = HalfPlane(angle=ANGLE, offset=0.0)
    x = _point(1.0, f)
    r = attack_smoothed(f, x, 0.25, eps_max=2.0, n_predict=5000, clip=None, seed=1)
    assert r.found and r.adv_prediction != r.clean_prediction
    assert predict(f, r.x_adv, 0.25, 5000, 0.001, 5000, seed=12345) == r.adv_prediction
    assert predict(f, x, 0.25, 5000, 0.001, 5000, seed=12345) == r.clean_prediction


def test_nothing_found_within_a_small_budget_is_infinite_with_no_point():
    f = HalfPlane(angle=ANGLE, offset=0.0)
    r = attack_smoothed(f, _point(1.0, f), 0.1, eps_max=0.5, steps=30, clip=None)
    assert not r.found and math.isinf(r.distance) and r.x_adv is None and r.adv_prediction is None
    assert r.record()["distance"] is None  # JSON has no inf


def test_the_attacks_noise_never_reuses_a_certificates_samples():
    seeds = range(50)
    assert all(attack_seed(s) not in (s, predict_seed(s)) for s in seeds)
    assert len({attack_seed(s) for s in seeds}) == 50
    for s in (0, 7):  # behaviourally: the first draws of the attack's stream are not CERTIFY's or PREDICT's
        draws = [torch.randn(8, generator=make_generator(k)) for k in (attack_seed(s), s, predict_seed(s))]
        assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


class _NoGrad(nn.Module):
    """A model that answers without gradients, as an ONNX runtime does."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.inner(x)


def test_a_model_without_gradients_gets_the_zeroth_order_search_with_its_reason():
    f = HalfPlane(angle=ANGLE, offset=0.0)
    blind = _NoGrad(f)
    assert has_gradients(f, _point(1.0, f)) and not has_gradients(blind, _point(1.0, f))
    r = attack_smoothed(blind, _point(1.0, f), 0.1, eps_max=3.0, n_predict=5000, clip=None, seed=2)
    assert r.method == "zeroth-order" and "no gradients" in r.reason
    assert r.found and 1.0 <= r.distance <= 1.05
    with pytest.raises(ValueError, match="method"):
        attack_smoothed(blind, _point(1.0, f), 0.1, method="pgd", clip=None)


def test_an_onnx_model_is_attacked_without_gradients(tmp_path):
    pytest.importorskip("onnxruntime")
    from rs_core.models.formats import load_model

    class Linear2(nn.Module):  # class-1 score x₁: f = 1[x₁ > 0]
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            p = x.reshape(x.shape[0], 2)
            return torch.stack([torch.zeros_like(p[:, 0]), p[:, 0]], dim=1)

    path = tmp_path / "lin.onnx"
    torch.onnx.export(Linear2().eval(), (torch.rand(2, 1, 1, 2),), str(path), dynamo=True,
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    model = load_model(path, device="cpu").model
    r = attack_smoothed(model, torch.tensor([[[-1.0, 0.3]]]), 0.1, eps_max=3.0, n_predict=5000, clip=None, seed=0)
    assert r.method == "zeroth-order" and r.found and 1.0 <= r.distance <= 1.1


def test_stop_ends_the_search_within_a_step_and_keeps_what_was_found():
    f = HalfPlane(angle=ANGLE, offset=0.0)
    stop = threading.Event()
    seen = []

    def progress(p):
        seen.append(p.step)
        if p.step == 3:
            stop.set()

    r = attack_smoothed(f, _point(1.0, f), 0.1, eps_max=3.0, steps=100, clip=None, stop=stop, progress=progress)
    assert r.stopped and r.steps == 3 and seen == [1, 2, 3]
    run = AttackRun(f, _point(1.0, f), 0.1, eps_max=3.0, clip=None)
    run.stop()
    assert run.run().stopped and run.done and run.result.steps == 0


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"sigma": 0}, "sigma"), ({"eps_max": 0}, "eps_max"), ({"eps_max": math.inf}, "eps_max"),
    ({"steps": 0}, "steps"), ({"m": 0}, "m"), ({"alpha": 1.5}, "alpha"), ({"n_predict": 0}, "n_predict"),
    ({"method": "ddn"}, "method"), ({"clip": (1.0, 0.0)}, "clip"), ({"batch_size": 0}, "batch_size"),
])
def test_invalid_arguments_are_refused_by_name(kwargs, name):
    f = HalfPlane(angle=ANGLE, offset=0.0)
    args = {"sigma": 0.25, **kwargs}
    with pytest.raises(ValueError, match=name):
        attack_smoothed(f, _point(1.0, f), args.pop("sigma"), **args)
    with pytest.raises(ValueError, match=name):
        AttackRun(f, _point(1.0, f), 0.25 if name != "sigma" else 0, **{k: v for k, v in kwargs.items()
                                                                        if k != "sigma"})


def test_an_input_g_abstains_on_has_nothing_to_change():
    f = HalfPlane(angle=ANGLE, offset=0.0)
    r = attack_smoothed(f, _point(0.0, f), 0.5, n_predict=200, clip=None)  # on the boundary: pA = ½
    assert r.clean_prediction == -1 and not r.found and "abstains" in r.reason
