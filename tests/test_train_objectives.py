"""rs_core/training/objectives.py and its use by ``train``: Gaussian, consistency, SmoothAdv and MACER objectives on a
tiny synthetic task (4×4 one-channel images of two classes, a small MLP), resumable bit for bit, bad
hyper-parameters refused by name."""

from __future__ import annotations

import csv
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from rs_core.smoothing.noises import get_noise
from rs_core.training import classifier
from rs_core.training.classifier import Recipe, train
from rs_core.training.loop import fit
from rs_core.training.objectives import (
    ObjectiveSpec,
    consistency_terms,
    draw_noise,
    macer_terms,
    smoothadv_attack,
    soft_smoothed_loss,
)

SIGMA = 0.5


def _task(n: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of 1×4×4 images in [0, 1]: dark (0.2) or bright (0.8) on average, with a little pixel noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = (0.2 + 0.6 * y.float()).view(-1, 1, 1, 1) + 0.05 * torch.randn(n, 1, 4, 4, generator=g)
    return x.clamp(0, 1), y


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))


def _fit(spec: ObjectiveSpec, epochs: int = 6) -> tuple[nn.Module, list[float]]:
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    result = fit(model, _task(), lambda b, s: spec.loss(model, b[0], b[1], SIGMA, s.noise, 0), opt,
                 epochs=epochs, batch_size=32, seed=0, progress=False)
    return model, result.losses


@pytest.mark.parametrize("spec", [
    ObjectiveSpec("gaussian"), ObjectiveSpec("consistency", consistency=5.0),
    ObjectiveSpec("smoothadv", smoothadv_eps=0.5, smoothadv_warmup=1, smoothadv_steps=2),
    # MACER at λ = 0.5: Zhai et al.'s λ = 16 outweighs the cross-entropy ~30-fold on this 2-class task, and SGD at
    # lr 0.1 for 24 steps then collapses to one class (the radius term drives the step size, not a bug of the term).
    ObjectiveSpec("macer", macer_k=8, macer_lambda=0.5),
], ids=lambda s: s.name)
def test_each_objective_lowers_its_loss_on_a_small_task(spec):
    x, y = _task(256, seed=9)  # held out, with the same noise (and attack) before and after

    def objective(model):
        return float(spec.loss(model, x, y, SIGMA, torch.Generator().manual_seed(1)).detach())

    before = objective(_mlp())
    model, losses = _fit(spec)
    assert objective(model) < 0.5 * before and losses[-1] < losses[0], (before, objective(model), losses)


def test_consistency_lowers_the_kl_between_noisy_predictions_relative_to_gaussian_training():
    x, y = _task(256, seed=1)
    kls = {}
    for spec in (ObjectiveSpec("gaussian"), ObjectiveSpec("consistency", consistency=20.0)):
        model, _ = _fit(spec)
        with torch.no_grad():
            kls[spec.name] = float(consistency_terms(model, x, y, SIGMA, torch.Generator().manual_seed(5)).kl)
    assert kls["consistency"] < kls["gaussian"], kls


def test_the_smoothadv_attack_raises_the_soft_smoothed_loss_within_its_budget():
    model, _ = _fit(ObjectiveSpec("gaussian"), epochs=3)
    model.zero_grad(set_to_none=True)
    x, y = _task(64, seed=2)
    gen = torch.Generator().manual_seed(3)
    noise = torch.randn((4, *x.shape), generator=gen) * SIGMA
    delta = smoothadv_attack(model, x, y, noise, eps=0.5, steps=2, gen=gen)
    assert bool((delta.flatten(1).norm(dim=1) <= 0.5 + 1e-5).all())
    assert bool(((x + delta) >= 0).all() and ((x + delta) <= 1).all())
    with torch.no_grad():
        before, after = soft_smoothed_loss(model, x, y, noise), soft_smoothed_loss(model, x + delta, y, noise)
    assert bool((after >= before - 1e-6).all())
    assert float((after > before).float().mean()) > 0.9
    assert not any(p.grad is not None for p in model.parameters())  # the attack leaves the parameters' grads alone


def test_macer_radius_is_finite_and_the_hinge_has_a_gradient_where_active():
    model, _ = _fit(ObjectiveSpec("gaussian"), epochs=2)
    x, y = _task(64, seed=4)
    t = macer_terms(model, x, y, SIGMA, torch.Generator().manual_seed(6), k=16, gamma=8.0, beta=16.0)
    assert int(t.active.sum()) > 0
    assert bool(torch.isfinite(t.radius[t.active]).all() and (t.radius[t.active] >= 0).all())
    assert bool((t.radius[t.active] <= SIGMA / 2 * 8.0).all())
    assert torch.isfinite(t.hinge) and float(t.hinge.detach()) > 0
    grads = torch.autograd.grad(t.hinge, list(model.parameters()))
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert torch.isfinite(t.loss(16.0))


def _synthetic_mnist(monkeypatch, n: int = 48) -> None:
    """train() on MNIST-shaped synthetic images, so the test needs no data set."""
    g = torch.Generator().manual_seed(7)
    ys = torch.randint(0, 10, (n,), generator=g)
    xs = (ys.float().view(-1, 1, 1, 1) / 10 + 0.1 * torch.rand(n, 1, 28, 28, generator=g)).clamp(0, 1)
    monkeypatch.setattr(classifier, "get_dataset", lambda *a, **k: None)
    monkeypatch.setattr(classifier, "dataset_tensors", lambda ds, limit=None: (xs, ys))


@pytest.mark.parametrize("options", [
    {"objective": "smoothadv", "smoothadv_m": 2, "smoothadv_steps": 2, "smoothadv_warmup": 2},
    {"objective": "macer", "macer_k": 2},
], ids=["smoothadv", "macer"])
def test_stop_and_resume_equals_a_straight_run_bit_for_bit(tmp_path, monkeypatch, options):
    _synthetic_mnist(monkeypatch)
    recipe = dict(dataset="mnist", arch="mnist_cnn", sigma=SIGMA, epochs=3, batch_size=16, lr=0.05, max_eval=16,
                  **options)
    straight, resumed = tmp_path / "a" / "m.pth.tar", tmp_path / "b" / "m.pth.tar"
    train(Recipe(**recipe), straight, progress=False)
    train(Recipe(**recipe), resumed, progress=False, stop_after=1)
    assert torch.load(resumed, weights_only=True)["epoch"] == 1
    meta = train(Recipe(**recipe), resumed, progress=False, resume=True)
    assert meta["recipe"]["objective"] == options["objective"] and meta["epochs_done"] == 3
    a, b = torch.load(straight, weights_only=True), torch.load(resumed, weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])

    def rows(path):
        return [r[:-1] for r in csv.reader(open(path.parent / "train_log.csv"))]  # all but the seconds

    assert rows(straight) == rows(resumed) and len(rows(straight)) == 4
    # Another hyper-parameter of the objective is another recipe: resuming is refused.
    train(Recipe(**recipe), resumed, progress=False, stop_after=1)
    key, value = next((k, v) for k, v in options.items() if k != "objective")
    with pytest.raises(ValueError, match="^resume: .* another recipe"):
        train(Recipe(**{**recipe, key: value + 1}), resumed, progress=False, resume=True)


def test_a_recipe_stored_before_objectives_existed_still_resumes():
    old = {k: v for k, v in Recipe(dataset="mnist", arch="mnist_cnn", sigma=0.5, epochs=2, consistency=5.0).__dict__
           .items() if not (k.startswith(("smoothadv", "macer")) or k in ("objective", "noise"))}
    new = Recipe(dataset="mnist", arch="mnist_cnn", sigma=0.5, epochs=2, consistency=5.0)
    assert classifier.upgrade_recipe(old) == new.__dict__
    assert new.objective_spec().name == "consistency"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("objective", "trades", "^objective: must be one of"),
    ("smoothadv_eps", 0.0, "^smoothadv_eps: must be finite and > 0"),
    ("smoothadv_eps", float("nan"), "^smoothadv_eps:"),
    ("smoothadv_m", 0, "^smoothadv_m: must be an integer >= 1"),
    ("smoothadv_steps", 1.5, "^smoothadv_steps:"),
    ("smoothadv_warmup", 0, "^smoothadv_warmup:"),
    ("macer_k", -1, "^macer_k:"),
    ("macer_lambda", -1.0, "^macer_lambda:"),
    ("macer_gamma", 0.0, "^macer_gamma:"),
    ("macer_beta", float("inf"), "^macer_beta:"),
    ("macer_deferred", -1, "^macer_deferred: must be an integer >= 0"),
    ("entropy", -0.5, "^entropy:"),
    ("noise", "cauchy", "^noise: must be one of"),
])
def test_bad_hyper_parameters_are_refused_by_name(field, value, message):
    with pytest.raises(ValueError, match=message):
        ObjectiveSpec(**{"name" if field == "objective" else field: value})
    with pytest.raises(ValueError, match=message):  # through train(), before any data is read
        train(Recipe(dataset="mnist", arch="mnist_cnn", sigma=0.5, epochs=1, **{field: value}), "unused.pth.tar")


def test_objectives_that_contradict_consistency_are_refused_by_name():
    with pytest.raises(ValueError, match="^consistency: objective 'consistency' needs"):
        ObjectiveSpec("consistency")
    with pytest.raises(ValueError, match="^consistency: λ applies to objective 'consistency' only"):
        Recipe(dataset="mnist", arch="mnist_cnn", sigma=0.5, epochs=1, objective="macer",
               consistency=1.0).objective_spec()


@pytest.mark.parametrize(("extra", "stderr"), [
    (["--smoothadv-eps", "-1"], r"argument --smoothadv-eps: must be finite and > 0"),
    (["--macer-k", "0"], r"argument --macer-k: must be an integer"),
    (["--macer-lambda", "nan"], r"argument --macer-lambda: must be finite"),
    (["--macer-deferred", "-2"], r"argument --macer-deferred: must be an integer in \[0"),
    (["--objective", "trades"], r"argument --objective: invalid choice"),
    (["--objective", "consistency"], r"^error: consistency: objective 'consistency' needs"),
])
def test_the_cli_refuses_bad_hyper_parameters_by_name(tmp_path, extra, stderr):
    proc = subprocess.run([sys.executable, "-m", "rs_core", "train", "--dataset", "mnist", "--arch", "mnist_cnn",
                           "--sigma", "0.5", "--epochs", "1", "--out", str(tmp_path / "m.pth.tar"), *extra],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert re.search(stderr, proc.stderr, re.MULTILINE), proc.stderr
    assert not (tmp_path / "m.pth.tar").exists()


def test_training_noise_is_the_certification_law_and_gaussian_is_the_stream_it_always_was():
    shape = torch.Size((4000, 1, 4, 4))
    gaussian = draw_noise(shape, SIGMA, torch.Generator().manual_seed(3), torch.device("cpu"))
    assert torch.equal(gaussian, torch.randn(shape, generator=torch.Generator().manual_seed(3)) * SIGMA)
    for name in ("laplace", "uniform"):
        eps = draw_noise(shape, SIGMA, torch.Generator().manual_seed(3), torch.device("cpu"), name)
        # The same map as certification's sampler applies to the same standard normals.
        assert torch.equal(eps, get_noise(name, SIGMA).transform(
            torch.randn(shape, generator=torch.Generator().manual_seed(3))))
        assert eps.dtype == torch.float32 and abs(float(eps.std()) - SIGMA) < 0.02  # 64,000 draws: sd of std ~0.003
    lam = get_noise("uniform", SIGMA).lam
    assert float(draw_noise(shape, SIGMA, torch.Generator().manual_seed(3), torch.device("cpu"),
                            "uniform").abs().max()) <= lam


def test_train_with_laplace_noise_records_it_and_refuses_to_resume_with_another(tmp_path, monkeypatch):
    _synthetic_mnist(monkeypatch)
    recipe = {"dataset": "mnist", "arch": "mnist_cnn", "sigma": SIGMA, "epochs": 2, "batch_size": 16, "lr": 0.05,
              "max_eval": 16}
    lap, gau = tmp_path / "l" / "m.pth.tar", tmp_path / "g" / "m.pth.tar"
    meta = train(Recipe(**recipe, noise="laplace"), lap, progress=False, stop_after=1)
    train(Recipe(**recipe), gau, progress=False, stop_after=1)
    assert meta["noise"] == "laplace" and meta["recipe"]["noise"] == "laplace"
    a, b = torch.load(lap, weights_only=True)["state_dict"], torch.load(gau, weights_only=True)["state_dict"]
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the noise reached the loss
    with pytest.raises(ValueError, match="^resume: .* another recipe"):
        train(Recipe(**recipe, noise="uniform"), lap, progress=False, resume=True)


def test_deferred_macer_trains_on_the_smoothed_cross_entropy_alone_until_its_epoch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.rand(8, 1, 4, 4), torch.arange(8) % 3
    spec = ObjectiveSpec("macer", macer_k=4, macer_lambda=3.0, macer_deferred=2)

    def parts():
        t = macer_terms(model, x, y, SIGMA, torch.Generator().manual_seed(1), k=4, gamma=8.0, beta=16.0)
        return t.ce, t.hinge

    ce, hinge = parts()
    assert float(hinge.detach()) > 0  # the radius term is there to be left out
    for epoch, expected in ((0, ce), (1, ce), (2, ce + 3.0 * hinge), (5, ce + 3.0 * hinge)):
        got = spec.loss(model, x, y, SIGMA, torch.Generator().manual_seed(1), epoch=epoch)
        assert torch.allclose(got, expected), epoch


def test_macer_refuses_a_noise_other_than_gaussian_by_name():
    with pytest.raises(ValueError, match="^noise: objective 'macer' maximizes the Gaussian"):
        ObjectiveSpec("macer", noise="laplace")
    ObjectiveSpec("smoothadv", noise="uniform")  # PGD on the soft smoothed classifier works with any noise
