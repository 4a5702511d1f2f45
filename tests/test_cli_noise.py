"""Noises and norms on the command line (issue 30), run as a user runs them: ``python -m rs_core …`` subprocesses.

certify/predict/certify-image take ``--noise`` and ``--norm``; the log's .meta.json and the certificate JSON record
both; a pair the noise does not certify, adaptive CERTIFY with another noise, a resume with another noise, and
analyze over logs of different norms are refused by name; verify re-runs with the recorded noise and norm."""

from __future__ import annotations

import json
import math

import pytest
from test_cli import needs_mnist, run  # the CLI as a subprocess, and the MNIST guard
from test_cli_model import _digit

from rs_core.logs.certify_logs import read_certify_log
from rs_core.models.checkpoints import CHECKPOINTS_DIR
from rs_core.smoothing.noises import get_noise

UNIFORM = CHECKPOINTS_DIR / "mnist/mnist_cnn/uniform_0.50/checkpoint.pth.tar"
LAPLACE = CHECKPOINTS_DIR / "mnist/mnist_cnn/laplace_0.50/checkpoint.pth.tar"
GAUSSIAN = CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar"


@pytest.mark.parametrize(("extra", "message"), [
    (["--noise", "laplace", "--norm", "l2"], "error: argument --norm: laplace noise certifies l1, not 'l2'"),
    (["--noise", "uniform", "--norm", "l2"], "error: argument --norm: uniform noise certifies l1, linf, not 'l2'"),
    (["--noise", "laplace", "--radii", "1"], "--radii: adaptive CERTIFY is Gaussian ℓ2 only; got --noise laplace ("),
    (["--norm", "l1", "--radii", "1"], "--radii: adaptive CERTIFY is Gaussian ℓ2 only; got --noise gaussian --norm l1"),
    (["--noise", "cauchy"], "argument --noise: invalid choice: 'cauchy'"),
])
def test_a_noise_and_norm_the_run_cannot_certify_is_refused_by_name(tmp_path, extra, message):
    proc = run("certify", "mnist", LAPLACE, 0.5, tmp_path / "log", "--skip", 5000, *extra, check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "log").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["attack", "mnist", GAUSSIAN, 0.5, "LOG", "--noise", "laplace"],
     "error: argument --noise: attack is Gaussian ℓ2 only (it searches the Gaussian-smoothed classifier"),
    (["attack", "mnist", GAUSSIAN, 0.5, "LOG", "--norm", "l1"], "error: argument --norm: attack is Gaussian ℓ2 only"),
    (["certify-dual", "mnist", GAUSSIAN, "LOG", "--noise", "uniform"],
     "error: argument --noise: certify-dual is Gaussian ℓ2 only"),
    (["certify-image", LAPLACE, "IMG", 0.5, "--out", "LOG", "--noise", "laplace", "--norm", "linf"],
     "error: argument --norm: laplace noise certifies l1, not 'linf'"),
    (["predict", "mnist", LAPLACE, 0.5, "LOG", "--norm", "l1"], "unrecognized arguments: --norm l1"),  # no radius
])
def test_a_command_that_cannot_take_the_noise_refuses_it_by_name_and_never_runs_gaussian(tmp_path, argv, message):
    argv = [tmp_path / "log" if a == "LOG" else tmp_path / "x.png" if a == "IMG" else a for a in argv]
    proc = run(*argv, check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "log").exists() and not (tmp_path / "log.meta.json").exists()


def _log(path, radius: str, noise: str, norm: str):
    path.write_text(f"idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t7\t7\t{radius}\t1\t0:00:01.0\n")
    path.with_name(path.name + ".meta.json").write_text(json.dumps({"noise": noise, "norm": norm}))
    return path


def test_analyze_refuses_logs_of_different_norms_and_reads_one_norm(tmp_path):
    l1 = _log(tmp_path / "sigma_0.50", "1.2000", "laplace", "l1")
    l2 = _log(tmp_path / "gauss_0.50", "0.9000", "gaussian", "l2")
    u1 = _log(tmp_path / "unif_0.50", "0.8000", "uniform", "l1")
    proc = run("analyze", l1, l2, check=False)
    assert proc.returncode == 2 and "error: logs: radii of different norms cannot share" in proc.stderr
    assert "(ℓ1)" in proc.stderr and "(ℓ2)" in proc.stderr
    both = run("analyze", l1, u1, "--radii", 0, 1, "--out", tmp_path / "r" / "x")
    assert "radii are l1 radii" in both.stderr and both.stdout.count("|1.00") == 1  # laplace ≥ 1, uniform not
    html = (tmp_path / "r" / "x.html").read_text()
    assert '"radius (ℓ1)"' in html or json.dumps("radius (ℓ1)") in html  # the x-axis title, as plotly writes it
    assert read_certify_log(l1).norm == "l1" and read_certify_log(tmp_path / "gauss_0.50").norm == "l2"
    # The tables say the norm too (ℓ2 tables stay Cohen et al.'s byte for byte, checked in test_cli.py).
    assert both.stdout.startswith("|  | ℓ1 r = 0.0 |ℓ1 r = 1.0 |")
    assert (tmp_path / "r" / "x.csv").read_text().startswith("label,radius_l1,")
    assert "$\\ell_1\\ r = 1.0$" in (tmp_path / "r" / "x.tex").read_text()


def test_analyze_never_sets_an_l2_attack_against_radii_of_another_noise_or_norm(tmp_path):
    """An attack's ℓ2 distances on the Gaussian-smoothed classifier below an ℓ1 radius of the Laplace-smoothed one
    contradict nothing: pairing them would raise false soundness alarms, so it is refused by name."""
    l1 = _log(tmp_path / "sigma_0.50", "1.2000", "laplace", "l1")
    (tmp_path / "attack_0.50").write_text("idx\tlabel\tpredict\tadv_distance\tadv_predict\ttime\n0\t7\t7\t0.5\t3\t1.0\n")
    proc = run("analyze", l1, "--attack", tmp_path / "attack_0.50", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "SOUNDNESS" not in proc.stdout + proc.stderr
    assert "error: attack: attack_0.50 holds ℓ2 distances on the Gaussian-smoothed classifier, but sigma_0.50 " \
           "certifies laplace noise ℓ1 radii" in proc.stderr
    l2 = _log(tmp_path / "sigma_0.50", "1.2000", "gaussian", "l2")  # the same rows as Gaussian ℓ2: an alarm
    assert run("analyze", l2, "--attack", tmp_path / "attack_0.50", check=False).returncode == 1


@pytest.mark.slow
@needs_mnist
def test_certify_with_uniform_noise_in_l1_and_linf_gives_the_radii_of_the_same_votes(tmp_path):
    """The same seed gives the same votes whatever the norm: each ℓ∞ radius is the ℓ∞ radius of the p_lower that
    the ℓ1 radius 2λ(p − ½) implies (up to the 4-decimal floor), and the logs record noise and norm."""
    common = ["--skip", 2500, "--N0", 20, "--N", 400, "--batch", 500, "--no-progress", "--noise", "uniform"]
    l1, linf = tmp_path / "sigma_0.50", tmp_path / "sigma_0.50_linf"
    run("certify", "mnist", UNIFORM, 0.5, l1, *common)
    run("certify", "mnist", UNIFORM, 0.5, linf, *common, "--norm", "linf")
    meta = json.loads((tmp_path / "sigma_0.50.meta.json").read_text())
    assert (meta["noise"], meta["norm"]) == ("uniform", "l1")
    assert json.loads((tmp_path / "sigma_0.50_linf.meta.json").read_text())["norm"] == "linf"
    a, b = read_certify_log(l1), read_certify_log(linf)
    assert list(a.predict) == list(b.predict) and (a.radius > 0).sum() >= 3
    noise = get_noise("uniform", 0.5)
    for r1, rinf in zip(a.radius, b.radius, strict=True):
        p = 0.5 + r1 / (2 * noise.lam)  # from the floored ℓ1 radius: p a little low, so its ℓ∞ radius too
        low, high = noise.radius(p, "linf", 784), noise.radius(p + 1e-4 / (2 * noise.lam), "linf", 784)
        assert low - 1e-4 <= rinf <= high + 1e-12
    # Resuming the ℓ1 log with another noise is refused: the log's settings are part of it.
    proc = run("certify", "mnist", UNIFORM, 0.5, l1, *common[:-1], "laplace", check=False)
    assert proc.returncode == 2 and "noise" in proc.stderr and "Traceback" not in proc.stderr
    # predict takes the noise too, and the model's own noise differing is a warning, not a silent change.
    pred = run("predict", "mnist", UNIFORM, 0.5, tmp_path / "p", "--N", 100, "--skip", 5000, "--noise", "gaussian",
               "--no-progress")
    assert "trained under uniform noise, smoothing with gaussian" in pred.stderr
    meta = json.loads((tmp_path / "p.meta.json").read_text())
    assert meta["noise"] == "gaussian" and "norm" not in meta  # PREDICT has no radius
    # A log written before noises existed (no noise in its .meta.json) was Gaussian: it still resumes.
    del meta["noise"]
    (tmp_path / "p.meta.json").write_text(json.dumps(meta))
    again = run("predict", "mnist", UNIFORM, 0.5, tmp_path / "p", "--N", 100, "--skip", 5000, "--no-progress")
    assert "already done" in again.stderr


def test_certify_image_with_laplace_noise_then_verify_reruns_it(tmp_path):
    out = tmp_path / "cert.json"
    digit = _digit(tmp_path / "one.png")
    proc = run("certify-image", LAPLACE, digit, 0.5, "--out", out, "--N", 2000, "--noise", "laplace",
               "--invert", "auto", "--frame-digit", "--device", "cpu", "--no-progress")
    doc = json.loads(out.read_text())
    cert = doc["certificate"]
    assert (cert["noise"], cert["norm"]) == ("laplace", "l1") and cert["prediction"] == 1
    assert "within ℓ1 radius" in proc.stdout and "ℓ1 perturbation" in doc["guarantee"]
    expected = get_noise("laplace", 0.5).radius(cert["p_lower"], "l1", complement=1 - cert["p_lower"])
    assert math.isclose(cert["radius"], expected, rel_tol=1e-9)
    assert list(doc["radii_other_bounds"]) == ["laplace noise, ℓ1 radius"]  # no Gaussian ℓ2 bound for Laplace noise
    again = run("verify", out, LAPLACE, digit, "--device", "cpu")
    assert "identical" in again.stdout
    # The same votes read as a Gaussian ℓ2 certificate would be another radius: verify says so.
    cert["noise"], cert["norm"] = "gaussian", "l2"
    out.write_text(json.dumps(doc))
    edited = run("verify", out, LAPLACE, digit, "--device", "cpu", check=False)
    assert edited.returncode == 1 and "radius" in edited.stdout + edited.stderr
