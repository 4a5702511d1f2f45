"""rs_core/models/denoisers.py: f∘D is a base classifier like any other; the exact oracle's law holds through it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from oracles import LinearOracle, make_oracle
from scipy import stats
from test_certify import exact_certify_law
from torch import nn

from rs_core import ABSTAIN, certify, certify_many
from rs_core.cli.main import main
from rs_core.data import data_dir, get_dataset
from rs_core.dual.smooth import certify_dual
from rs_core.models.architectures import get_architecture
from rs_core.models.checkpoints import CHECKPOINTS_DIR, LoadedModel, load_checkpoint, save_checkpoint
from rs_core.models.denoisers import DENOISER_KIND, Denoised, DnCNN, Identity, denoise_experts, denoised, load_denoiser
from rs_core.training.denoiser import DenoiserRecipe, train_denoiser

ROOT = Path(__file__).resolve().parents[1]
MNIST_050 = CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar"
MNIST_CLEAN = CHECKPOINTS_DIR / "mnist/mnist_cnn/clean/checkpoint.pth.tar"  # the off-the-shelf classifier
needs_mnist = pytest.mark.skipif(not (data_dir() / "mnist" / "MNIST" / "raw").exists(),
                                 reason=f"no MNIST under RS_DATA_DIR={data_dir()}")


class Affine(nn.Module):
    """D(x) = a·x + c: a linear 'denoiser', so that f∘D stays a linear classifier with a known true radius."""

    def __init__(self, a: float, c: float) -> None:
        super().__init__()
        self.a, self.c = a, c
        self.eval()

    def forward(self, x):
        return self.a * x + self.c


def test_the_composition_is_the_denoiser_then_the_classifier():
    torch.manual_seed(0)
    f = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    d = DnCNN(1, depth=3, width=4).eval()
    for p in d.body[-1].parameters():
        nn.init.normal_(p)  # not the identity it starts as
    x = torch.rand(6, 1, 4, 4)
    assert torch.equal(denoised(f, d)(x), f(d(x)))


def test_an_identity_denoiser_reduces_exactly_to_plain_certify():
    model, x = make_oracle(0.9, 0.5)
    plain = certify(model, x, 0.5, n0=50, n=2000, alpha=0.01, batch_size=500, seed=3)
    through = certify(denoised(model, Identity(tuple(x.shape)), tuple(x.shape)), x, 0.5, n0=50, n=2000, alpha=0.01,
                      batch_size=500, seed=3)
    np.testing.assert_array_equal(plain.counts, through.counts)
    np.testing.assert_array_equal(plain.counts_selection, through.counts_selection)
    assert plain.radius == through.radius


def test_certificates_through_a_composed_model_follow_the_exact_law():
    """f linear (w, b), D(x) = a·x + c: f∘D is linear with weights a·w and bias w·c·1 + b, so its smoothed classifier
    and true radius are known exactly; CERTIFY on f∘D must follow the exact law of that linear classifier."""
    p_a, sigma, n0, n, alpha, a, c = 0.9, 0.5, 10, 200, 0.05, 0.5, 0.1
    folded, x = make_oracle(p_a, sigma)  # the linear classifier f∘D must equal
    w = folded.w / a
    b = folded.b - float(w.sum()) * c
    f = LinearOracle(w, b).eval()
    composed = denoised(f, Affine(a, c), tuple(x.shape))
    assert float(composed(x[None])[0, 1]) == pytest.approx(folded.margin(x), rel=1e-6)  # float32 input
    true_radius = folded.true_radius(x)
    repeats = 3000
    certs = certify_many(composed, x.expand(repeats, -1, -1, -1), sigma, n0, n, alpha, batch_size=50_000, seed=0)
    false = sum(cert.prediction not in (ABSTAIN, 1) or (cert.prediction == 1 and cert.radius > true_radius)
                for cert in certs)
    q, _, _ = exact_certify_law(p_a, sigma, n0, n, alpha, true_radius)
    assert q <= alpha and stats.binomtest(false, repeats, q).pvalue > 1e-4


@pytest.mark.parametrize("classifier, shape, message", [
    (nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval(), (1, 28, 28), None),
    (nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval(), (3, 32, 32), "denoiser: does not take images"),
])
def test_a_denoiser_for_other_images_is_refused(classifier, shape, message):
    d = DnCNN(1, depth=3, width=4).eval()
    if message is None:
        denoised(classifier, d, shape)
    else:
        with pytest.raises(ValueError, match=f"^{message}"):
            denoised(classifier, d, shape)


def test_modules_in_training_mode_are_refused():
    with pytest.raises(ValueError, match="^denoiser: is in training mode"):
        denoised(nn.Linear(2, 2).eval(), DnCNN(1, depth=3, width=4))


def test_load_denoiser_refuses_a_classifier_and_loads_a_denoiser(tmp_path):
    with pytest.raises(ValueError, match="^denoiser: checkpoint.pth.tar is not a denoiser"):
        load_denoiser(MNIST_050)
    path = tmp_path / "d.pth.tar"
    save_checkpoint(path, DnCNN(1, 6, 32), "dncnn_mnist", epoch=1,
                    meta={"kind": DENOISER_KIND, "sigma": 0.5, "dataset": "mnist", "input_shape": [1, 28, 28]})
    loaded = load_denoiser(path)
    assert loaded.arch == "dncnn_mnist" and loaded.sigma == 0.5 and not loaded.model.training


def _loss_column(csv_path: Path) -> list[float]:
    with open(csv_path) as f:
        return [float(r["train_loss"]) for r in csv.DictReader(f)]


@needs_mnist
@pytest.mark.parametrize("objective", ["mse", "stability"])
def test_training_lowers_the_loss_and_resuming_gives_the_same_weights(tmp_path, objective):
    kw = {"dataset": "mnist", "sigma": 0.5, "objective": objective, "batch_size": 64, "max_train": 256, "max_eval": 200,
          "classifier": str(MNIST_CLEAN) if objective == "stability" else None, "seed": 0}
    # At this size (4 batches per epoch) the stability objective's epoch loss is noisy: whether it falls over three
    # epochs depends on the seed (about 5 seeds in 6 with the training streams of rs_core.training.loop).
    straight = tmp_path / "straight" / "checkpoint.pth.tar"
    meta = train_denoiser(DenoiserRecipe(epochs=3, **kw), straight, progress=False)
    losses = _loss_column(straight.with_name("train_log.csv"))
    assert losses[-1] < losses[0], losses
    if objective == "mse":
        assert meta["test"]["mse_denoised"] < meta["test"]["mse_noisy"]
    else:
        assert meta["test"]["classifier_agreement"] is not None
        assert meta["recipe"]["classifier_sha256"] == load_checkpoint(MNIST_CLEAN).sha256
    # A run stopped after epoch 1 and resumed gives identical weights (seeded shuffling and noise, saved states).
    stopped = tmp_path / "stopped" / "checkpoint.pth.tar"
    train_denoiser(DenoiserRecipe(epochs=3, **kw), stopped, progress=False, stop_after=1)
    assert torch.load(stopped, weights_only=True)["epoch"] == 1
    train_denoiser(DenoiserRecipe(epochs=3, **kw), stopped, resume=True, progress=False)
    a, b = torch.load(straight, weights_only=True)["state_dict"], torch.load(stopped, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_refuses_bad_recipes(tmp_path):
    with pytest.raises(ValueError, match="^objective"):
        train_denoiser(DenoiserRecipe(dataset="mnist", sigma=0.5, objective="l1", epochs=1), tmp_path / "x")
    with pytest.raises(ValueError, match="^classifier"):
        train_denoiser(DenoiserRecipe(dataset="mnist", sigma=0.5, objective="stability", epochs=1), tmp_path / "x")


@pytest.mark.slow
@needs_mnist
def test_cli_certify_with_a_denoiser_records_it_and_refuses_a_denoiser_as_classifier(tmp_path):
    den = tmp_path / "den.pth.tar"
    save_checkpoint(den, DnCNN(1, 6, 32), "dncnn_mnist", epoch=1,  # the identity it starts as
                    meta={"kind": DENOISER_KIND, "sigma": 0.25, "dataset": "mnist", "input_shape": [1, 28, 28]})
    out = tmp_path / "log.tsv"
    plain = tmp_path / "plain.tsv"
    common = ["--skip", "2000", "--N0", "50", "--N", "500", "--batch", "550", "--no-progress"]
    run = [sys.executable, "-m", "rs_core", "certify", "mnist", str(MNIST_050), "0.5"]
    r = subprocess.run(run + [str(out), "--denoiser", str(den), *common], capture_output=True, text=True, cwd=ROOT,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert "trained for σ = 0.25, certifying at σ = 0.5" in r.stderr  # a warning, not an error
    subprocess.run(run + [str(plain), *common], check=True, capture_output=True, cwd=ROOT)
    # The identity denoiser changes nothing: the same rows (but for the time column).
    rows = [line.split("\t")[:5] for line in out.read_text().splitlines()]
    assert rows == [line.split("\t")[:5] for line in plain.read_text().splitlines()] and len(rows) == 6
    record = json.loads(Path(str(out) + ".meta.json").read_text())
    assert record["denoiser"]["sigma_trained"] == 0.25 and len(record["denoiser"]["sha256"]) == 64
    assert record["base_classifier"]["sha256"] == load_checkpoint(MNIST_050).sha256
    bad = subprocess.run([sys.executable, "-m", "rs_core", "certify", "mnist", str(den), "0.5", str(tmp_path / "b")],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    assert bad.returncode == 2 and "is a denoiser; pass it as --denoiser" in bad.stderr


def _threshold_classifier(path: Path, dark: int, bright: int, threshold: float) -> None:
    """An mnist_cnn checkpoint that answers ``bright`` when the 7×7 pixels at (4i, 4j) of the normalized image,
    each clipped at 0, add up to more than ``threshold``, and ``dark`` otherwise (every other class far behind)."""
    model = get_architecture("mnist_cnn")
    net = model[1]  # model[0] normalizes: (x − 0.1307) / 0.3081
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        net.features[0].weight[0, 0, 2, 2] = 1.0  # channel 0: the pixel at (2i, 2j) (5×5, padding 2, stride 2)
        net.features[2].weight[0, 0, 1, 1] = 1.0  # channel 0 again at (2i, 2j) (3×3, padding 1, stride 2)
        net.classifier[1].weight[0, :49] = 1.0  # hidden unit 0: the sum of channel 0's 7×7 map (flattened first)
        net.classifier[3].bias.fill_(-1e6)
        net.classifier[3].bias[dark] = threshold
        net.classifier[3].bias[bright] = 0.0
        net.classifier[3].weight[bright, 0] = 1.0
    save_checkpoint(path, model, "mnist_cnn", epoch=0, meta={"dataset": "mnist", "sigma": 0.25})


def _shifting_denoiser(path: Path, shift: float, sigma: float) -> None:
    """A dncnn_mnist checkpoint with D(x) = x + shift: all weights 0 and the last bias −shift (D = x − body(x))."""
    den = DnCNN(1, 6, 32)
    with torch.no_grad():
        for p in den.parameters():
            p.zero_()
        den.body[-1].bias.fill_(-shift)
    save_checkpoint(path, den, "dncnn_mnist", epoch=1, meta={"kind": DENOISER_KIND, "sigma": sigma, "objective": "mse",
                                                              "dataset": "mnist", "input_shape": [1, 28, 28]})


@pytest.mark.slow
def test_cli_certify_applies_the_denoiser_on_a_synthetic_data_set(tmp_path: Path, synthetic_mnist: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``certify --denoiser`` smooths f∘D, not f: f answers ``dark`` for images in [0, 1] and ``bright`` for
    images shifted by +10, and D shifts by +10, so every row predicts ``bright`` with D and ``dark`` without it.
    Runs on the synthetic MNIST of conftest.py (CI has no data set)."""
    sigma, n0, n, alpha, dark, bright = 0.25, 10, 50, 0.001, 7, 3
    # Without D the 49 clipped normalized pixels add up to about 49·(0.5 − 0.13)/0.31 ≈ 60 (noise: ± 6); with it to
    # about 49·(10.5 − 0.13)/0.31 ≈ 1,640. A threshold of 500 is tens of standard deviations from both, so every
    # noisy sample votes the one class and both logs are known in advance.
    model, den = tmp_path / "f.pth.tar", tmp_path / "den.pth.tar"
    _threshold_classifier(model, dark, bright, threshold=500.0)
    _shifting_denoiser(den, shift=10.0, sigma=sigma)
    args = ["certify", "mnist", str(model), str(sigma)]
    common = ["--N0", str(n0), "--N", str(n), "--alpha", str(alpha), "--device", "cpu", "--no-progress"]
    proc = subprocess.run([sys.executable, "-m", "rs_core", *args, str(tmp_path / "with"), "--denoiser", str(den),
                           *common], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
                          env=os.environ | {"RS_DATA_DIR": str(synthetic_mnist), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "the denoiser was trained for" not in proc.stderr  # D's σ is the σ certified at: no warning
    # The reference without D runs in this process (a second Python start would cost seconds; the subprocess above
    # already covers the command line itself).
    monkeypatch.setenv("RS_DATA_DIR", str(synthetic_mnist))
    assert main([*args, str(tmp_path / "plain"), *common]) == 0
    logs = {name: [line.split("\t") for line in (tmp_path / name).read_text().splitlines()]
            for name in ("with", "plain")}
    test_set = get_dataset("mnist", "test", root=synthetic_mnist)
    labels = [test_set[i][1] for i in range(len(test_set))]
    assert {dark, bright} <= set(labels) and len(set(labels)) > 2  # so neither run's correct column is constant
    # All n votes for one class: the Clopper–Pearson bound is α^(1/n), the radius σ·Φ⁻¹(α^(1/n)), in both runs.
    radius = sigma * stats.norm.ppf(alpha ** (1 / n))
    for name, predicted in (("with", bright), ("plain", dark)):
        header, *rows = logs[name]
        assert header == ["idx", "label", "predict", "radius", "correct", "time"]
        assert [(int(r[0]), int(r[1]), int(r[2]), int(r[4])) for r in rows] == \
            [(i, y, predicted, int(y == predicted)) for i, y in enumerate(labels)]
        assert all(float(r[3]) == pytest.approx(radius, abs=1e-4) for r in rows)
    record = json.loads((tmp_path / "with.meta.json").read_text())
    assert record["denoiser"] == {"file": "den.pth.tar", "sha256": load_checkpoint(den).sha256, "arch": "dncnn_mnist",
                                  "sigma_trained": sigma, "objective": "mse"}
    assert record["base_classifier"]["sha256"] == load_checkpoint(model).sha256
    assert "denoiser" not in json.loads((tmp_path / "plain.meta.json").read_text())


def _loaded_denoiser(model: nn.Module, sigma: float | None, path: str = "d.pth.tar") -> LoadedModel:
    meta = {"kind": DENOISER_KIND} | ({} if sigma is None else {"sigma": sigma})
    return LoadedModel(model=model, arch="dncnn_mnist", num_classes=0, input_shape=(1, 28, 28), meta=meta,
                       sha256="0" * 64, path=path)


def test_dual_experts_take_each_denoiser_at_its_sigma_and_identity_changes_nothing():
    torch.manual_seed(0)
    experts = {s: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval() for s in (0.25, 0.5, 1.0)}
    estimator = nn.Sequential(nn.Flatten(), nn.Linear(784, 3)).eval()
    with torch.no_grad():  # the estimator always chooses σ = 0.5, the expert with the denoiser
        estimator[1].weight.zero_()
        estimator[1].bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    wrapped, records = denoise_experts(experts, [_loaded_denoiser(Identity((1, 28, 28)), 0.5)], (1, 28, 28))
    assert isinstance(wrapped[0.5], Denoised) and wrapped[0.25] is experts[0.25] and wrapped[1.0] is experts[1.0]
    assert records == [{"sigma": 0.5, "file": "d.pth.tar", "sha256": "0" * 64, "arch": "dncnn_mnist",
                        "objective": None}]
    x = torch.rand(1, 28, 28)
    plain = certify_dual(estimator, experts, x, 1.0, 50, 400, 0.01, 200, seed=3)
    through = certify_dual(estimator, wrapped, x, 1.0, 50, 400, 0.01, 200, seed=3)
    assert plain.sigma == 0.5 and plain.stage2 is not None
    # Same seed, identity D: the same votes in both stages, the same certificate.
    assert (through.prediction, through.radius, through.sigma) == (plain.prediction, plain.radius, plain.sigma)
    assert np.array_equal(through.stage2.counts, plain.stage2.counts)
    assert np.array_equal(through.stage1.counts, plain.stage1.counts)


def test_dual_expert_denoisers_that_match_no_expert_or_twice_are_refused():
    experts = {0.25: nn.Flatten().eval(), 0.5: nn.Flatten().eval()}
    ident = Identity((1, 28, 28))
    with pytest.raises(ValueError, match=r"^denoisers: d.pth.tar was trained for σ = 1; the experts' noise levels "
                                         r"are 0.25, 0.5"):
        denoise_experts(experts, [_loaded_denoiser(ident, 1.0)], (1, 28, 28))
    with pytest.raises(ValueError, match="^denoisers: d.pth.tar records no σ"):
        denoise_experts(experts, [_loaded_denoiser(ident, None)], (1, 28, 28))
    with pytest.raises(ValueError, match="^denoisers: two denoisers for σ = 0.5"):
        denoise_experts(experts, [_loaded_denoiser(ident, 0.5), _loaded_denoiser(ident, 0.5, "e.pth.tar")],
                        (1, 28, 28))


@needs_mnist
def test_stability_training_can_start_from_an_mse_denoiser_and_refuses_a_classifier_as_start(tmp_path):
    start = tmp_path / "mse" / "checkpoint.pth.tar"
    torch.manual_seed(5)
    body = DnCNN(1, 6, 32)
    for p in body.parameters():  # not the zero-initialized identity: a start that shows through
        nn.init.normal_(p, std=0.01)
    save_checkpoint(start, body, "dncnn_mnist", epoch=3,
                    meta={"kind": DENOISER_KIND, "sigma": 0.5, "dataset": "mnist", "input_shape": [1, 28, 28]})
    kw = {"dataset": "mnist", "sigma": 0.5, "objective": "stability", "batch_size": 64, "max_train": 64,
          "classifier": str(MNIST_CLEAN), "epochs": 1, "lr": 1e-12}  # lr ≈ 0: the weights stay the start's
    out = tmp_path / "stab" / "checkpoint.pth.tar"
    meta = train_denoiser(DenoiserRecipe(init=str(start), **kw), out, progress=False)
    assert meta["recipe"]["init_sha256"] == load_checkpoint(start).sha256
    trained = torch.load(out, weights_only=True)["state_dict"]
    assert all(torch.allclose(trained[k], v, atol=1e-6) for k, v in body.state_dict().items())
    with pytest.raises(ValueError, match="^init: denoiser: checkpoint.pth.tar is not a denoiser"):
        train_denoiser(DenoiserRecipe(init=str(MNIST_050), **kw), tmp_path / "x" / "c.pth.tar", progress=False)


@pytest.mark.slow
@needs_mnist
def test_cli_certify_dual_with_denoisers_records_them(tmp_path):
    den = tmp_path / "den.pth.tar"
    save_checkpoint(den, DnCNN(1, 6, 32), "dncnn_mnist", epoch=1,  # the identity it starts as
                    meta={"kind": DENOISER_KIND, "sigma": 1.0, "dataset": "mnist", "input_shape": [1, 28, 28]})
    est = CHECKPOINTS_DIR / "mnist/dual/sigma_estimator.pth.tar"
    common = ["--skip", "5000", "--N0", "20", "--N", "200", "--batch", "500", "--device", "cpu", "--no-progress"]
    cmd = [sys.executable, "-m", "rs_core", "certify-dual", "mnist", str(est)]
    r = subprocess.run(cmd + [str(tmp_path / "with"), "--denoisers", str(den), *common], capture_output=True,
                       text=True, cwd=ROOT, check=False)
    assert r.returncode == 0, r.stderr
    subprocess.run(cmd + [str(tmp_path / "plain"), *common], check=True, capture_output=True, cwd=ROOT)
    rows = [line.split("\t")[:5] for line in (tmp_path / "with").read_text().splitlines()]
    assert rows == [line.split("\t")[:5] for line in (tmp_path / "plain").read_text().splitlines()] and len(rows) == 3
    record = json.loads((tmp_path / "with.meta.json").read_text())
    assert [d["sigma"] for d in record["denoisers"]] == [1.0] and record["denoisers"][0]["file"] == "den.pth.tar"
    assert record["estimator"]["sha256"] == load_checkpoint(est).sha256 and len(record["experts"]) == 3
    bad = subprocess.run(cmd + [str(tmp_path / "bad"), "--denoisers", str(MNIST_050), *common], capture_output=True,
                         text=True, cwd=ROOT, check=False)
    assert bad.returncode == 2 and "error: denoiser: checkpoint.pth.tar is not a denoiser" in bad.stderr
