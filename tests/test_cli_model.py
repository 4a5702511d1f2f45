"""certify-image and export as a user runs them (subprocesses), and certify on a data set with an ONNX model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from test_cli import needs_mnist, run  # the CLI as a subprocess, and the MNIST guard

from rs_core.models.checkpoints import CHECKPOINTS_DIR

MNIST_050 = CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar"
REPORT_KEYS = {"certificate", "rounded_down", "software", "predict", "radii_other_bounds", "model", "input",
               "certifications_of_this_input_in_the_session", "warnings", "guarantee"}


@pytest.fixture(scope="module")
def onnx_mnist(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "mnist.onnx"
    run("export", MNIST_050, out)
    return out


def _digit(path: Path) -> Path:
    img = Image.new("L", (120, 120), 255)
    img.paste(0, (55, 15, 68, 105))
    img.save(path)
    return path


def test_export_then_certify_image_writes_the_apps_certificate_json(onnx_mnist, tmp_path):
    out = tmp_path / "cert.json"
    proc = run("certify-image", onnx_mnist, _digit(tmp_path / "one.png"), 0.5, "--out", out, "--N", 3000,
               "--invert", "auto", "--frame-digit", "--predict", 500, "--device", "cpu", "--no-progress")
    doc = json.loads(out.read_text())
    assert set(doc) == REPORT_KEYS
    cert = doc["certificate"]
    assert cert["prediction"] == 1 and cert["class_name"] == "1" and cert["n"] == 3000 and cert["radius"] > 0.5
    assert sum(cert["counts"]) == 3000 and cert["bound"] == "anytime-beta-mixture" and cert["batch_seconds"] == 0.5
    assert doc["predict"]["prediction"] == 1 and doc["warnings"] == []
    m = doc["model"]
    assert m["format"] == "onnx" and m["file"] == "mnist.onnx" and m["sigma_trained"] == 0.5
    assert m["preprocess"]["input_shape"] == [1, 28, 28] and m["preprocess"]["sigma_units"].startswith("pixels in [0, 1]")
    assert doc["input"]["shape"] == [1, 28, 28] and len(doc["input"]["file_sha256"]) == 64
    assert "certified: 1 within ℓ2 radius" in proc.stdout


def test_certify_image_with_a_torchvision_state_dict_and_imagenet_style_preprocessing(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "r18.safetensors"
    save_file(torchvision.models.resnet18(num_classes=5).eval().state_dict(), str(path))
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (320, 240), (30, 120, 200)).save(photo)
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\nbird\nfish\nfrog\n")
    out = tmp_path / "c.json"
    run("certify-image", path, photo, 0.25, "--out", out, "--arch", "torchvision:resnet18", "--input-size", 48,
        "--classes", names, "--N", 200, "--N0", 20, "--device", "cpu", "--no-progress")
    doc = json.loads(out.read_text())
    pre = doc["model"]["preprocess"]
    assert pre["input_shape"] == [3, 48, 48] and pre["resize"] == 54 and pre["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert doc["model"]["arch"] == "torchvision:resnet18" and doc["model"]["class_names"] == "file names.txt"
    assert doc["certificate"]["class_name"] in ("cat", "dog", "bird", "fish", "frog", "abstain")


@pytest.mark.parametrize(("args", "message"), [
    (["--arch", "torchvision:resnet18"], "arch: mnist.onnx carries its own graph (onnx)"),
    (["--classes", "imagenet"], "class_names: 1,000 names for a model that scores 10 classes"),
    (["--mean", "0.1,0.2,0.3", "--std", "1,1,1"], "mean: need 1 or 1 values"),
])
def test_bad_model_options_are_one_line_errors(onnx_mnist, tmp_path, args, message):
    proc = run("certify-image", onnx_mnist, _digit(tmp_path / "one.png"), 0.5, "--out", tmp_path / "c.json", *args,
               "--N", 100, "--device", "cpu", "--no-progress", check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "c.json").exists()


def test_torchscript_needs_trust_code(tmp_path):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10)).eval()
    ts = tmp_path / "ts.pt"
    torch.jit.script(net).save(str(ts))
    common = [ts, _digit(tmp_path / "one.png"), 0.5, "--out", tmp_path / "c.json", "--input-size", "1x28x28", "--N", 100,
              "--device", "cpu", "--no-progress"]
    proc = run("certify-image", *common, check=False)
    assert proc.returncode == 2 and "TorchScript file is code" in proc.stderr and "--trust-code" in proc.stderr
    run("certify-image", *common, "--trust-code")
    assert json.loads((tmp_path / "c.json").read_text())["model"]["format"] == "torchscript"


@needs_mnist
def test_certify_a_data_set_with_an_onnx_model(onnx_mnist, tmp_path):
    out = tmp_path / "log.tsv"
    run("certify", "mnist", onnx_mnist, 0.5, out, "--N0", 20, "--N", 200, "--max-examples", 2, "--batch", 220,
        "--device", "cpu", "--no-progress")
    rows = out.read_text().splitlines()
    assert rows[0].startswith("idx\tlabel\tpredict") and len(rows) == 3
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["base_classifier"]["format"] == "onnx" and meta["base_classifier"]["normalize"] is None
