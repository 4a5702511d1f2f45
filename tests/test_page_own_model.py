"""The sidebar's "your model" path with AppTest: formats, what the file does not declare, the card of what was
understood, refusals, and the server's model folder (RS_MODELS_DIR)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import onnx
import pytest
import torch
import torchvision
from oracles import digit_png
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from rs_core.models.checkpoints import CHECKPOINTS_DIR
from rs_core.models.formats import export_model, load_model
from widgets.own_model import ASK
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
    # The same MNIST graph (it normalizes inside) without the "rslab" entry: a file that declares no preprocessing,
    # and a second such file (other bytes: another metadata entry) to check that each file is asked about.
    proto = onnx.load(str(onnx_file))
    del proto.metadata_props[:]
    onnx.save(proto, str(d / "bare.onnx"))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "producer_note", "another file"
    onnx.save(proto, str(d / "bare2.onnx"))
    return {"onnx": onnx_file, "r18": d / "r18.safetensors", "ts": ts, "bare": d / "bare.onnx",
            "bare2": d / "bare2.onnx"}


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
    at.radio(key="source").set_value("upload").run()  # Certify opens on an input that needs no upload
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


def test_weights_only_ask_for_the_architecture_then_for_the_normalization(files):
    at = _own(files["r18"])
    assert any("holds weights only" in e.value and "r18.safetensors" in e.value for e in at.sidebar.error)
    assert at.session_state["settings"].loaded is None
    at.sidebar.text_input(key="own_arch").set_value("torchvision:resnet18")
    at.sidebar.text_input(key="own_input_size").set_value("32").run()
    # The architecture's reference mean/std is not the file's declaration: asked, with ImageNet's among the answers.
    ask = at.sidebar.radio(key="own_norm_ask")
    assert ask.value is None and "ImageNet mean (0.485, 0.456, 0.406)" in ask.options[1]
    assert "torchvision:resnet18's reference weights" in ask.help
    assert "normalization" in at.session_state["settings"].problems
    card = _card(at)
    assert "shorter side to 36, center crop 32×32" in card and "normalization: not declared" in card
    ask.set_value("imagenet").run()
    assert not at.sidebar.error, [e.value for e in at.sidebar.error]
    card = _card(at)
    assert "torchvision:resnet18" in card and "shorter side to 36, center crop 32×32" in card
    assert "normalized by mean (0.485, 0.456, 0.406)" in card and "10 classes" in card
    assert "chosen by the user (the file declares none)" in card
    s = at.session_state["settings"]
    assert s.loaded.preprocessing.resize == 36 and s.model_record()["preprocess"]["mean"] == pytest.approx(
        [0.485, 0.456, 0.406])
    assert s.model_record()["normalization"] == "chosen by the user (the file declares none)"


def test_an_invalid_value_is_shown_and_nothing_loads_on_a_different_one(files):
    at = _own(files["r18"])
    at.sidebar.text_input(key="own_arch").set_value("torchvision:resnet18")
    at.sidebar.text_input(key="own_input_size").set_value("big").run()
    assert any("input_size: must be a whole number or H×W" in e.value for e in at.sidebar.error)
    assert at.session_state["settings"].loaded is None
    at.sidebar.text_input(key="own_input_size").set_value("32").run()
    at.sidebar.radio(key="own_norm_ask").set_value("custom").run()
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


@pytest.fixture
def server_limit():
    """Set the running server's upload limit (server.maxUploadSize, what the server enforces) for one test."""
    from streamlit import config

    before = config.get_option("server.maxUploadSize")
    yield lambda mb: config.set_option("server.maxUploadSize", mb)
    config.set_option("server.maxUploadSize", before)


@pytest.mark.parametrize(("env", "server", "limit", "note"), [
    (None, 200, "200", None), (None, 500, "500", None), ("1500", 2000, "1,500", None),
    ("1500", 200, "200", "asks for 1,500 MB, but this server accepts uploads up to 200 MB"),
    ("lots", 200, "200", "is not a whole number of MB")])
def test_the_stated_upload_limit_is_never_more_than_the_server_enforces(monkeypatch, server_limit, env, server,
                                                                        limit, note):
    if env is None:
        monkeypatch.delenv("RS_MODEL_UPLOAD_MB", raising=False)
    else:
        monkeypatch.setenv("RS_MODEL_UPLOAD_MB", env)
    server_limit(server)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.selectbox(key="model").set_value(LOCAL).run()
    up = at.sidebar.file_uploader(key="ckpt_upload")
    assert up.label.startswith(f"Model file (up to {limit} MB)")
    assert up.proto.max_upload_size_mb == int(limit.replace(",", ""))  # what the browser enforces
    caption = next(c.value for c in at.sidebar.caption if "Model uploads are limited to" in c.value)
    assert f"Model uploads are limited to {limit} MB" in caption and "RS_MODELS_DIR" in caption
    if note is None:
        assert "\n" not in caption  # no note under it
    else:
        assert note in caption.split("\n")[-1]


def test_make_run_gives_the_server_the_model_upload_limit_and_the_defaults_agree():
    """One setting: `make run` passes $RS_MODEL_UPLOAD_MB to the server (the app reads the same variable), and a plain
    `streamlit run app.py` gets the same default from .streamlit/config.toml."""
    import shutil
    import subprocess
    import tomllib

    from widgets.own_model import DEFAULT_UPLOAD_MB

    config = tomllib.loads((ROOT / ".streamlit/config.toml").read_text())
    assert config["server"]["maxUploadSize"] == DEFAULT_UPLOAD_MB
    if shutil.which("make") is None:
        pytest.skip("no make here")

    def make_run(value: str | None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "RS_MODEL_UPLOAD_MB"}
        if value is not None:
            env["RS_MODEL_UPLOAD_MB"] = value
        # -n: the commands only (nothing is installed or started)
        return subprocess.run(["make", "-s", "-n", "run"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=30, check=True)

    assert f"--server.maxUploadSize {DEFAULT_UPLOAD_MB}" in make_run(None).stdout
    assert f"--server.maxUploadSize {DEFAULT_UPLOAD_MB}" in make_run("").stdout
    assert "--server.maxUploadSize 1000" in make_run("1000").stdout
    # The run target's check of the value, run on its own: an invalid limit stops `make run` with a message.
    def value_check(value: str) -> subprocess.CompletedProcess:
        script = re.search(r"^case .*?esac$", make_run(value).stdout, re.DOTALL | re.MULTILINE).group(0)
        return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10, check=False)

    bad = value_check("lots")
    assert bad.returncode == 2 and "RS_MODEL_UPLOAD_MB must be a whole number of MB" in bad.stderr
    assert value_check("0").returncode == 2 and value_check("1000").returncode == 0


# ------------------------------------------------------------------------------------- normalization never assumed


def _scores(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


def test_a_file_that_declares_no_normalization_is_asked_about_and_nothing_runs_until_answered(files):
    at = _own(files["bare"])
    ask = at.sidebar.radio(key="own_norm_ask")
    assert ask.value is None and "bare.onnx does not declare one" in ask.label
    assert list(ask.options) == [ASK["self"], ASK["custom"]]  # ImageNet's mean/std is for RGB: not offered here
    s = at.session_state["settings"]
    assert s.loaded is None and "does not declare how its input is normalized" in s.problems["normalization"]
    assert "does not declare how its input is normalized" in s.why_not_ready
    assert any("does not declare how its input is normalized" in i.value for i in at.info)  # the page says why
    assert all(b.key != "start" for b in at.button)  # no Start to press
    assert "normalization: not declared" in _card(at) and not at.exception


@pytest.mark.parametrize(("answer", "mean", "std"), [("self", None, None), ("custom", "0.2", "0.5"),
                                                     ("custom", "0.1307", "0.3081")])
def test_each_answer_is_the_input_normalization_the_model_gets(files, answer, mean, std):
    at = _own(files["bare"])
    at.sidebar.radio(key="own_norm_ask").set_value(answer).run()
    if answer == "custom":
        at.sidebar.text_input(key="own_mean").set_value(mean)
        at.sidebar.text_input(key="own_std").set_value(std).run()
    assert not at.sidebar.error, [e.value for e in at.sidebar.error]
    s = at.session_state["settings"]
    assert s.ready and "normalization" not in s.problems
    raw = load_model(files["bare"], device="cpu", normalize=False).model  # the graph alone, [0, 1] pixels in
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    by_hand = x if answer == "self" else (x - float(mean)) / float(std)
    assert torch.allclose(_scores(s.loaded.model, x), _scores(raw, by_hand), atol=1e-5)
    rec = s.model_record()
    assert rec["preprocess"]["mean"] == (None if mean is None else [float(mean)])
    assert rec["preprocess"]["std"] == (None if std is None else [float(std)])
    assert rec["normalization"] == "chosen by the user (the file declares none)"


def test_imagenet_is_the_rgb_models_input_normalization_when_chosen(files):
    at = _own(files["r18"])
    at.sidebar.text_input(key="own_arch").set_value("torchvision:resnet18")
    at.sidebar.text_input(key="own_input_size").set_value("32").run()
    at.sidebar.radio(key="own_norm_ask").set_value("imagenet").run()
    s = at.session_state["settings"]
    raw = load_model(files["r18"], arch="torchvision:resnet18", input_size=32, device="cpu", normalize=False).model
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    assert torch.allclose(_scores(s.loaded.model, x), _scores(raw, (x - mean) / std), atol=1e-4)
    assert not torch.allclose(_scores(s.loaded.model, x), _scores(raw, x), atol=1e-4)  # the check can fail


@pytest.mark.parametrize(("mean", "std", "message"), [
    ("abc", "0.5", "mean: must be numbers separated by commas, got 'abc'"),
    ("0.5", "0", "std: must be > 0"),
    ("0.5,0.5", "0.2,0.2", "mean: need 1 or 1 values (one per input channel), got 2"),
    ("0.5", "", "std: give both mean and std")])
def test_invalid_custom_values_are_shown_by_name_and_nothing_runs(files, mean, std, message):
    at = _own(files["bare"])
    at.sidebar.radio(key="own_norm_ask").set_value("custom").run()
    at.sidebar.text_input(key="own_mean").set_value(mean)
    at.sidebar.text_input(key="own_std").set_value(std).run()
    assert any(message in e.value for e in at.sidebar.error), [e.value for e in at.sidebar.error]
    s = at.session_state["settings"]
    assert s.loaded is None and message in s.problems["normalization"] and not at.exception


def test_another_file_is_asked_again_and_a_menu_round_trip_keeps_the_answer(files):
    at = _own(files["bare"])
    at.sidebar.radio(key="own_norm_ask").set_value("self").run()
    assert at.session_state["settings"].ready
    at.selectbox(key="model").set_value(at.selectbox(key="model").options[0]).run()  # a shipped model
    at.selectbox(key="model").set_value(LOCAL).run()  # and back: the same file, the same answer
    assert at.sidebar.radio(key="own_norm_ask").value == "self" and at.session_state["settings"].ready
    bare2 = files["bare2"]
    at.sidebar.file_uploader(key="ckpt_upload").set_value([(bare2.name, bare2.read_bytes(), "application/octet-stream")])
    at.run()
    assert at.sidebar.radio(key="own_norm_ask").value is None  # an answer belongs to the file it was given for
    assert "normalization" in at.session_state["settings"].problems


def test_a_declared_normalization_is_not_asked_about_but_can_be_overridden(files):
    at = _own(files["onnx"])  # RS Lab's export declares that the graph normalizes itself
    assert not [r for r in at.sidebar.radio if r.key == "own_norm_ask"]
    s = at.session_state["settings"]
    assert s.ready and s.model_record()["normalization"] == "declared by the file"
    at.sidebar.selectbox(key="own_norm").set_value("custom").run()  # the expander's override
    assert at.session_state["settings"].loaded is None
    at.sidebar.text_input(key="own_mean").set_value("0.5")
    at.sidebar.text_input(key="own_std").set_value("0.25").run()
    s = at.session_state["settings"]
    assert s.ready and s.model_record()["normalization"] == "given with the model options"
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    raw = load_model(files["onnx"], device="cpu").model
    assert torch.allclose(_scores(s.loaded.model, x), _scores(raw, (x - 0.5) / 0.25), atol=1e-5)


def test_the_chosen_normalization_is_recorded_and_verify_reproduces_the_certificate(files, tmp_path, capsys):
    """The app's certificate for a file that declares no normalization names the user's choice, and
    `python -m rs_core verify` re-runs it bit for bit with no model options: it reads the normalization from the
    certificate (the file declares none)."""
    from rs_core.cli.main import main
    from widgets.report import certificate_report

    at = _own(files["bare"])
    at.sidebar.radio(key="own_norm_ask").set_value("custom").run()
    at.sidebar.text_input(key="own_mean").set_value("0.1307")
    at.sidebar.text_input(key="own_std").set_value("0.3081").run()
    at.number_input(key="sigma").set_value(0.5)
    at.number_input(key="n_max").set_value(500).run()
    at.radio(key="source").set_value("upload").run()
    at.file_uploader(key="upload").set_value([("one.png", digit_png(), "image/png")]).run()
    at.button(key="start").click().run()
    run = at.session_state["run"]
    assert run.job.wait(120)
    doc = certificate_report(run)
    assert doc["model"]["preprocess"]["mean"] == [0.1307] and doc["model"]["preprocess"]["std"] == [0.3081]
    assert doc["model"]["normalization"] == "chosen by the user (the file declares none)"
    cert, image = tmp_path / "cert.json", tmp_path / "one.png"
    cert.write_text(json.dumps(doc))
    image.write_bytes(digit_png())
    assert main(["verify", str(cert), str(files["bare"]), str(image), "--device", "cpu"]) == 0, capsys.readouterr()
    out = capsys.readouterr()
    assert "identical" in out.out and "normalization: as the certificate records" in out.err
    # Given explicitly, another normalization is the first difference (nothing is taken silently).
    assert main(["verify", str(cert), str(files["bare"]), str(image), "--device", "cpu", "--no-normalize"]) == 1
    assert "model.preprocess" in capsys.readouterr().out


def test_another_normalization_for_the_same_file_marks_the_result_outdated(files):
    """The same file (same sha256) with another normalization is another base classifier: its old result is marked."""
    at = _own(files["bare"])
    at.sidebar.radio(key="own_norm_ask").set_value("self").run()
    at.number_input(key="n_max").set_value(200).run()
    at.radio(key="source").set_value("upload").run()
    at.file_uploader(key="upload").set_value([("one.png", digit_png(), "image/png")]).run()
    at.button(key="start").click().run()
    assert at.session_state["run"].job.wait(120)
    at.run()
    assert not [w for w in at.warning if "earlier choice" in w.value]
    at.sidebar.radio(key="own_norm_ask").set_value("custom").run()
    at.sidebar.text_input(key="own_mean").set_value("0.1307")
    at.sidebar.text_input(key="own_std").set_value("0.3081").run()
    [stale] = [w.value for w in at.warning if "earlier choice" in w.value]
    assert "the model's preprocessing" in stale
