"""The command line, run as a user runs it: ``python -m rs_core …`` in a subprocess."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rs_core.data import data_dir
from rs_core.logs.certify_logs import read_certify_log
from rs_core.models.architectures import get_architecture
from rs_core.models.checkpoints import CHECKPOINTS_DIR, load_checkpoint, save_checkpoint

needs_mnist = pytest.mark.skipif(not (data_dir() / "mnist" / "MNIST" / "raw").exists(),
                                 reason=f"no MNIST under RS_DATA_DIR={data_dir()}")


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "rs_core", *map(str, args)], capture_output=True, text=True,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def mnist_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pth.tar"
    save_checkpoint(path, get_architecture("mnist_cnn"), "mnist_cnn", epoch=0, meta={"dataset": "mnist", "sigma": 0.5})
    return path


@pytest.mark.slow
@needs_mnist
def test_certify_writes_cohen_format_log_and_analyze_reads_it(mnist_checkpoint, tmp_path):
    out = tmp_path / "sigma_0.50"
    run("certify", "mnist", mnist_checkpoint, 0.5, out, "--N0", 20, "--N", 300, "--skip", 2500, "--batch", 256,
        "--device", "cpu", "--no-progress")
    lines = out.read_text().splitlines()
    assert lines[0] == "idx\tlabel\tpredict\tradius\tcorrect\ttime"
    assert [ln.split("\t")[0] for ln in lines[1:]] == ["0", "2500", "5000", "7500"]
    log = read_certify_log(out)
    for pred, radius, correct, label in zip(log.predict, log.radius, log.correct, log.true_label, strict=True):
        if pred == -1:
            assert radius == 0.0 and correct == 0
        else:
            assert radius > 0 and correct == int(pred == label)
    # Same seed → same log (times aside).
    again = tmp_path / "again"
    run("certify", "mnist", mnist_checkpoint, 0.5, again, "--N0", 20, "--N", 300, "--skip", 2500, "--batch", 256,
        "--no-progress")
    assert [ln.split("\t")[:5] for ln in again.read_text().splitlines()] == [ln.split("\t")[:5] for ln in lines]

    report = tmp_path / "report" / "x"
    proc = run("analyze", out, "--radii", 0, 0.25, "--out", report)
    assert proc.stdout.startswith("|  | r = 0.0 |r = 0.25 |")
    assert "<b> &sigma; = 0.50 </b>|" in proc.stdout
    for ext in (".md", ".tex", ".csv", ".html"):
        assert (report.parent / f"x{ext}").stat().st_size > 0
    html = (report.parent / "x.html").read_text()
    # plotly.js is embedded, nothing is loaded from the web: the page works offline.
    assert len(html) > 1_000_000 and not re.search(r"<script[^>]+src=[\"']https?://", html)


@pytest.mark.slow
@needs_mnist
def test_certify_packs_small_n_and_predict_writes_its_log(mnist_checkpoint, tmp_path):
    out = tmp_path / "packed"
    run("certify", "mnist", mnist_checkpoint, 0.25, out, "--N0", 10, "--N", 40, "--skip", 1000, "--max", 5000,
        "--batch", 1000, "--no-progress")
    assert len(out.read_text().splitlines()) == 1 + 5
    pred = tmp_path / "predict"
    run("predict", "mnist", mnist_checkpoint, 0.25, pred, "--N", 100, "--skip", 5000, "--no-progress")
    lines = pred.read_text().splitlines()
    assert lines[0] == "idx\tlabel\tpredict\tcorrect\ttime" and len(lines) == 3


@pytest.mark.slow
@needs_mnist
def test_train_one_tiny_epoch_and_resume(tmp_path):
    out = tmp_path / "mnist" / "mnist_cnn" / "noise_0.25" / "checkpoint.pth.tar"
    args = ["train", "--dataset", "mnist", "--arch", "mnist_cnn", "--sigma", 0.25, "--epochs", 1, "--max-train", 512,
            "--batch", 64, "--out", out, "--no-progress", "--max-eval", 300]
    run(*args)
    loaded = load_checkpoint(out, dataset="mnist")
    assert loaded.sigma == 0.25 and loaded.meta["epochs_done"] == 1 and loaded.meta["recipe"]["max_train"] == 512
    assert loaded.meta["recipe"]["max_eval"] == 300 == loaded.meta["accuracy"]["n_eval"]
    assert 0.0 <= loaded.meta["accuracy"]["test_noisy"] <= 1.0
    csv_lines = (out.parent / "train_log.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,lr,train_loss") and len(csv_lines) == 2
    # Resuming with a larger --epochs is refused (another recipe); the same recipe resumes to the end.
    proc = run(*args[:8], 2, *args[9:], "--resume", check=False)
    assert proc.returncode == 2 and "another recipe" in proc.stderr
    assert "nothing to resume" in run(*args, "--resume").stderr
    # The finished file is lean: weights and metadata, no optimizer state.
    assert set(torch.load(out, weights_only=True)) == {"arch", "state_dict", "epoch", "meta"}


def test_errors_are_one_line_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"not a checkpoint")
    proc = run("certify", "mnist", bad, 0.5, tmp_path / "out", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: checkpoint:") and "Traceback" not in proc.stderr
    proc = run("analyze", tmp_path / "missing", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = run("certify", "svhn", bad, 0.5, tmp_path / "out", check=False)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


MNIST_050 = CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar"


@pytest.mark.parametrize("argv, stderr", [
    (["certify", "mnist", "{memo}", "0.5", "{out}"], r"^error: checkpoint: memo.pth is corrupt"),
    (["certify", "mnist", "{ckpt}", "nan", "{out}"], r"argument sigma: must be finite and > 0, got 'nan'"),
    (["certify", "mnist", "{ckpt}", "0.5", "{out}", "--N", "1e5"], r"argument --N: expected an integer"),
    (["certify", "mnist", "{ckpt}", "0.5", "{out}", "--device", "tpu"], r"argument --device: .*'tpu'"),
    (["certify", "mnist", "{ckpt}", "0.5", "{out}", "--alpha", "1"], r"argument --alpha: must be in \(0, 1\)"),
    (["analyze", "{binary}"], r"^error: log: binary.tsv is not UTF-8 text"),
    (["analyze", "{ckpt}", "--radius-range", "0", "1000", "1e-5"], r"^error: radius_range: 1e\+08 radii is over the limit"),
    (["certify-dual", "mnist", "{ckpt}", "{out}"], r"^error: estimator: .* is not a σ-estimator"),
], ids=["memo checkpoint", "sigma nan", "N float", "device", "alpha 1", "binary log", "radius range", "not dual"])
def test_hostile_input_is_a_one_line_error_and_exit_2(argv, stderr, tmp_path):
    """The CLI half of the error contract: the message, status 2, no traceback, no output file."""
    (tmp_path / "memo.pth").write_bytes(b"\x80\x02h\x05.")
    (tmp_path / "binary.tsv").write_bytes(bytes(range(256)))
    files = {"memo": tmp_path / "memo.pth", "binary": tmp_path / "binary.tsv", "ckpt": MNIST_050,
             "out": tmp_path / "out.tsv"}
    proc = run(*[a.format(**files) for a in argv], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(stderr, proc.stderr.strip().splitlines()[-1]), proc.stderr
    assert not (tmp_path / "out.tsv").exists()


def test_analyze_common_refuses_logs_of_different_data_sets():
    mnist = CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/sigma_0.50"
    partial = CHECKPOINTS_DIR / "cifar10-partial/cifar_cnn/noise_0.50/sigma_0.50"
    proc = run("analyze", mnist, partial, "--common", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: logs: they index different data sets (cifar10-partial: 1 log(s), "
                                  "mnist: 1 log(s))"), proc.stderr
    proc = run("analyze", mnist, partial)  # without --common: side by side, each on its own images
    assert proc.returncode == 0 and proc.stdout.count("&sigma; = 0.50") == 2


SHIPPED_MNIST = [CHECKPOINTS_DIR / f"mnist/mnist_cnn/noise_{s}/checkpoint.pth.tar" for s in ("0.25", "0.50", "1.00")]


@pytest.mark.slow
@needs_mnist
def test_train_sigma_then_certify_dual_end_to_end_on_mnist(tmp_path):
    """Labels (cached, resumable) → σ-estimator → certify-dual log that analyze reads next to single-σ logs."""
    est = tmp_path / "dual" / "sigma_estimator.pth.tar"
    args = ["train-sigma", "--dataset", "mnist", "--experts", *SHIPPED_MNIST, "--sigma-e", 1.0, "--out", est,
            "--label-n", 16, "--max-train", 300, "--epochs", 1, "--batch", 64, "--consistency", 5, "--label-cap", "auto"]
    first = run(*args)
    assert "best-σ shares σ = 0.25:" in first.stdout
    cache = sorted((tmp_path / "dual" / "labels_cache").glob("radii_*.npy"))
    assert len(cache) == 1 and re.fullmatch(r"radii_0000000_[0-9a-f]{32}\.npy", cache[0].name)
    stamp = cache[0].stat().st_mtime_ns
    run(*args)  # resumes: the cached labels are reused, not recomputed
    assert cache[0].stat().st_mtime_ns == stamp
    loaded = load_checkpoint(est)
    assert loaded.meta["kind"] == "sigma-estimator" and loaded.meta["sigmas"] == [0.25, 0.5, 1.0]
    assert loaded.num_classes == 3 and loaded.sigma == 1.0
    training = loaded.meta["training"]  # the recipe is recorded: consistency and the common label cap (N = 16)
    from rs_core.dual.estimator import label_ceiling

    assert training["consistency"] == 5.0 and training["label_cap"] == pytest.approx(label_ceiling(0.25, 16))

    out = tmp_path / "dual_log"
    run("certify-dual", "mnist", est, out, "--N0", 20, "--N", 200, "--skip", 2500, "--batch", 500,
        "--device", "cpu", "--no-progress")
    log = read_certify_log(out, "dual")
    assert log.idx.tolist() == [0, 2500, 5000, 7500]
    side = [line.split("\t") for line in (tmp_path / "dual_log.dual.tsv").read_text().splitlines()]
    assert side[0] == ["idx", "label", "predict", "radius", "sigma", "radius_sigma", "radius_class", "limited_by"]
    for row, radius in zip(side[1:], log.radius, strict=True):
        if row[2] != "-1":  # certified: the final radius is the smaller stage radius
            assert float(row[3]) == pytest.approx(min(float(row[5]), float(row[6])), abs=1e-4)
            assert float(row[4]) in (0.25, 0.5, 1.0) and row[7] in ("sigma", "class")
        assert float(row[3]) == pytest.approx(radius, abs=1e-3)
    table = run("analyze", out, CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/sigma_0.50", "--labels", "dual", "σ=0.5")
    rows = [line for line in table.stdout.splitlines() if line.startswith("<b> dual </b>")]
    assert len(rows) == 1 and rows[0].split("| ")[1].startswith(f"{log.certified_accuracy([0.0])[0]:.2f}")


def test_certify_dual_refuses_a_base_classifier_as_estimator(tmp_path):
    proc = run("certify-dual", "mnist", SHIPPED_MNIST[0], tmp_path / "x", "--no-progress", check=False)
    assert proc.returncode == 2 and "error: estimator:" in proc.stderr and "not a σ-estimator" in proc.stderr


@pytest.mark.slow
@needs_mnist
def test_train_sigma_rounds_fine_tune_the_experts_relabel_and_the_result_certifies(tmp_path):
    """Sun et al.'s iterative scheme: the round's fine-tuned experts are written next to the estimator, which names
    them (sha256 checked on load), and certify-dual runs with them."""
    from rs_core.dual.estimator import load_dual

    est = tmp_path / "dual" / "sigma_estimator.pth.tar"
    run("train-sigma", "--dataset", "mnist", "--experts", *SHIPPED_MNIST, "--sigma-e", 1.0, "--out", est,
        "--label-n", 16, "--max-train", 300, "--epochs", 1, "--batch", 64, "--rounds", 1, "--finetune-epochs", 1)
    estimator, experts = load_dual(est)
    rounds = estimator.meta["training"]["rounds"]
    assert len(rounds) == 1 and sum(rounds[0]["routed_share"]) == pytest.approx(1.0)
    for sigma, expert in experts.items():
        path = tmp_path / "dual" / "experts_round1" / f"noise_{sigma:.2f}" / "checkpoint.pth.tar"
        assert expert.path == str(path.resolve()) or Path(expert.path).resolve() == path.resolve()
        recipe = expert.meta["recipe"]
        assert recipe["round"] == 1 and recipe["from_sha256"] == load_checkpoint(SHIPPED_MNIST[[0.25, 0.5, 1.0].index(
            sigma)]).sha256 and expert.sigma == sigma
    assert len(list((tmp_path / "dual" / "labels_cache").glob("radii_*.npy"))) == 2  # relabelled: a second key
    out = tmp_path / "dual_log"
    run("certify-dual", "mnist", est, out, "--N0", 20, "--N", 200, "--skip", 5000, "--batch", 500, "--device", "cpu",
        "--no-progress")
    assert read_certify_log(out, "dual").idx.tolist() == [0, 5000]


@pytest.mark.slow
@needs_mnist
def test_train_sigma_router_fits_thresholds_and_the_router_certifies(tmp_path):
    """--router confidence: no training; the thresholds and the projection they were chosen by are recorded, the
    router names the shipped experts (hashes checked on load) and certify-dual runs with it."""
    from rs_core.dual.estimator import load_dual

    est = tmp_path / "dual" / "sigma_estimator.pth.tar"
    proc = run("train-sigma", "--dataset", "mnist", "--experts", *SHIPPED_MNIST, "--sigma-e", 1.0, "--out", est,
               "--router", "confidence", "--max-train", 60, "--label-n", 20, "--router-samples", 20, "--no-progress")
    assert "thresholds" in proc.stdout and "not a certificate" in proc.stdout
    estimator, experts = load_dual(est)
    fit = estimator.meta["training"]["fit"]
    assert estimator.arch == "router_mnist_cnn" and sorted(experts) == [0.25, 0.5, 1.0]
    assert fit["images"] == 60 and fit["samples"] == 20 and len(fit["thresholds"]) == 3
    weight = estimator.model.route.weight[:, 0].tolist()
    assert weight == pytest.approx(fit["thresholds"])
    out = tmp_path / "dual_log"
    run("certify-dual", "mnist", est, out, "--N0", 20, "--N", 200, "--skip", 5000, "--batch", 500, "--device", "cpu",
        "--no-progress")
    assert read_certify_log(out, "dual").idx.tolist() == [0, 5000]


def test_train_sigma_router_refuses_training_options(tmp_path):
    proc = run("train-sigma", "--dataset", "mnist", "--experts", *SHIPPED_MNIST, "--sigma-e", 1.0, "--out",
               tmp_path / "e.pth.tar", "--router", "confidence", "--consistency", 5, check=False)
    assert proc.returncode == 2 and "error: consistency: does not apply to --router" in proc.stderr
