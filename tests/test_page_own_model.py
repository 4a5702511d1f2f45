"""The sidebar's "your model" path with AppTest: formats, what the file does not declare, the card of what was
understood, refusals, and the server's model folder (RS_MODELS_DIR)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from oracles import digit_png
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from rs_core.models.checkpoints import CHECKPOINTS_DIR
from rs_core.models.formats import export_model, load_model
from widgets.sidebar import LOCAL

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
MNIST_050 = CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("own")
    onnx_file = export_model(load_model(MNIST_050, device="cpu"), d / "mnist.onnx")
    torch.manual_seed(0)
    save_file(torchvision.models.resnet18(num_classes=10).eval().state_dict(), str(d / "r18.safetensors"))
    ts = d / "scripted.pt"
    torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()).save(str(ts))
    return {"onnx": onnx_file, "r18": d / "r18.safetensors", "ts": ts}


def _own(path: Path) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/Certify.py").run()
    at.selectbox(key="model").set_value(LOCAL).run()
    at.sidebar.file_uploader(key="ckpt_upload").set_value([(path.name, path.read_bytes(), "application/octet-stream")])
    return at.run()


def _card(at: AppTest) -> str:
    return " ".join(c.value for c in at.sidebar.caption)


def test_an_onnx_upload_shows_what_was_understood_and_certifies_with_it_recorded(files):
    at = _own(files["onnx"])
    assert not at.exception and not at.sidebar.error
    card = _card(at)
    assert "Understood:** onnx · sha256" in card and "1×28×28" in card and "the model normalizes itself" in card and "σ = 0.5" in card
    assert at.number_input(key="sigma").value == 0.5  # the training σ the file declares
    at.number_input(key="n_max").set_value(2000).run()
    at.file_uploader(key="upload").set_value([("one.png", digit_png(), "image/png")]).run()
    at.button(key="start").click().run()
    run = at.session_state["run"]
    assert run.job.wait(120)
    at.run()
    assert not at.exception
    from widgets.report import certificate_report

    doc = certificate_report(run)
    assert doc["certificate"]["prediction"] == 1 and doc["model"]["format"] == "onnx"
    assert doc["model"]["preprocess"]["input_shape"] == [1, 28, 28] and doc["warnings"] == []
    assert doc["certificate"]["batch_seconds"] == 0.5


def test_weights_only_ask_for_the_architecture_then_load_with_imagenet_preprocessing(files):
    at = _own(files["r18"])
    assert any("holds weights only" in e.value and "r18.safetensors" in e.value for e in at.sidebar.error)
    assert at.session_state["settings"].loaded is None
    at.sidebar.text_input(key="own_arch").set_value("torchvision:resnet18")
    at.sidebar.text_input(key="own_input_size").set_value("32").run()
    assert not at.sidebar.error, [e.value for e in at.sidebar.error]
    card = _card(at)
    assert "torchvision:resnet18" in card and "shorter side to 36, center crop 32×32" in card
    assert "normalized by mean (0.485, 0.456, 0.406)" in card and "10 classes" in card
    s = at.session_state["settings"]
    assert s.loaded.preprocessing.resize == 36 and s.model_record()["preprocess"]["mean"] == pytest.approx(
        [0.485, 0.456, 0.406])


def test_an_invalid_value_is_shown_and_nothing_loads_on_a_different_one(files):
    at = _own(files["r18"])
    at.sidebar.text_input(key="own_arch").set_value("torchvision:resnet18")
    at.sidebar.text_input(key="own_input_size").set_value("big").run()
    assert any("input_size: must be a whole number or H×W" in e.value for e in at.sidebar.error)
    assert at.session_state["settings"].loaded is None
    at.sidebar.selectbox(key="own_norm").set_value("custom").run()
    at.sidebar.text_input(key="own_input_size").set_value("32")
    at.sidebar.text_input(key="own_mean").set_value("0.5,0.5")
    at.sidebar.text_input(key="own_std").set_value("0.2,0.2").run()
    assert any("mean: need 1 or 3 values" in e.value for e in at.sidebar.error)
    assert at.session_state["settings"].loaded is None


def test_a_class_names_file_of_the_wrong_length_is_refused(files):
    at = _own(files["onnx"])
    at.sidebar.selectbox(key="own_classes").set_value("file").run()
    at.sidebar.file_uploader(key="own_classes_file").set_value([("names.txt", b"a\nb\nc\n", "text/plain")]).run()
    assert any("class_names: 3 names for a model that scores 10 classes" in e.value for e in at.sidebar.error)
    at.sidebar.file_uploader(key="own_classes_file").set_value(
        [("names.txt", "\n".join(f"digit {i}" for i in range(10)).encode(), "text/plain")]).run()
    assert not at.sidebar.error and at.session_state["settings"].class_names[7] == "digit 7"


def test_a_torchscript_upload_is_refused_with_what_to_export_to(files):
    at = _own(files["ts"])
    errors = " ".join(e.value for e in at.sidebar.error)
    assert "scripted.pt" in errors and "TorchScript file is code" in errors and "ONNX" in errors
    assert "/tmp" not in errors and "rslab-upload" not in errors
    assert at.session_state["settings"].loaded is None and not at.exception


def test_the_server_model_folder_is_listed_with_its_sidecar_and_loads(files, tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "digits.onnx").write_bytes(files["onnx"].read_bytes())
    (folder / "digits.onnx.json").write_text(json.dumps({"label": "Digits (ONNX)", "class_names": "names.txt"}))
    (folder / "names.txt").write_text("\n".join(f"n{i}" for i in range(10)))
    monkeypatch.setenv("RS_MODELS_DIR", str(folder))
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert "Digits (ONNX) (server)" in at.selectbox(key="model").options
    at.selectbox(key="model").set_value("server:digits.onnx").run()
    assert not at.sidebar.error and not at.exception
    s = at.session_state["settings"]
    assert s.loaded.fmt == "onnx" and s.class_names[3] == "n3" and s.model_label == "Digits (ONNX) (server)"
    assert "Model file (up to" not in " ".join(u.label for u in at.sidebar.file_uploader)


@pytest.mark.parametrize(("env", "limit"), [(None, "200"), ("1500", "1,500"), ("lots", "200")])
def test_the_upload_limit_is_configurable_and_stated_next_to_the_uploader(monkeypatch, env, limit):
    if env is None:
        monkeypatch.delenv("RS_MODEL_UPLOAD_MB", raising=False)
    else:
        monkeypatch.setenv("RS_MODEL_UPLOAD_MB", env)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.selectbox(key="model").set_value(LOCAL).run()
    up = at.sidebar.file_uploader(key="ckpt_upload")
    assert up.label.startswith(f"Model file (up to {limit} MB)")
    assert any(f"Model uploads are limited to {limit} MB" in c.value and "RS_MODELS_DIR" in c.value
               for c in at.sidebar.caption)
