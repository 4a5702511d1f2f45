"""Where a loaded model's normalization comes from (rs_core.models.formats): declared, given, or assumed — and
:func:`with_normalization`, which the app uses for the user's answer when a file declares none."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from rs_core.models.checkpoints import CHECKPOINTS_DIR
from rs_core.models.formats import export_model, load_model, normalization_declared, with_normalization
from rs_core.models.preprocess import NORMALIZATION_SOURCES

MNIST_050 = CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("norm")
    exported = export_model(load_model(MNIST_050, device="cpu"), d / "mnist.onnx")
    proto = onnx.load(str(exported))
    del proto.metadata_props[:]  # the same graph, declaring nothing
    onnx.save(proto, str(d / "bare.onnx"))
    torch.manual_seed(0)
    save_file(torchvision.models.resnet18(num_classes=4).eval().state_dict(), str(d / "r18.safetensors"))
    return {"exported": exported, "bare": d / "bare.onnx", "r18": d / "r18.safetensors"}


@pytest.mark.parametrize(("file", "kwargs", "source"), [
    ("exported", {}, "file"),
    ("bare", {}, "none"),
    ("bare", {"mean": "0.5", "std": "0.25"}, "given"),
    ("bare", {"normalize": False}, "given"),
    ("r18", {"arch": "torchvision:resnet18", "input_size": 32}, "architecture"),
    ("r18", {"arch": "torchvision:resnet18", "input_size": 32, "normalize": False}, "given"),
    ("checkpoint", {}, "network"),
])
def test_the_normalization_source_says_whether_it_was_declared_or_assumed(files, file, kwargs, source):
    path = MNIST_050 if file == "checkpoint" else files[file]
    m = load_model(path, device="cpu", **kwargs)
    assert m.meta["normalization_source"] == source
    assert normalization_declared(m) is (source not in ("none", "architecture"))
    assert m.record()["normalization"] == NORMALIZATION_SOURCES[source]


def test_with_normalization_puts_the_chosen_normalization_in_front_of_the_same_network(files):
    r18 = load_model(files["r18"], arch="torchvision:resnet18", input_size=32, device="cpu")  # ImageNet assumed
    plain = with_normalization(r18, None, None)
    custom = with_normalization(r18, [0.4, 0.5, 0.6], "0.2")
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        net = r18.model[1]
        assert torch.equal(plain.model(x), net(x))
        by_hand = (x - torch.tensor([0.4, 0.5, 0.6]).view(3, 1, 1)) / 0.2
        assert torch.allclose(custom.model(x), net(by_hand), atol=1e-5)
    assert custom.preprocessing.std == (0.2, 0.2, 0.2) and custom.preprocessing.resize == r18.preprocessing.resize
    assert custom.meta["normalization_source"] == "chosen" and normalization_declared(custom)
    assert custom.record()["preprocess"]["mean"] == [0.4, 0.5, 0.6] and custom.sha256 == r18.sha256
    assert r18.meta["normalization_source"] == "architecture"  # the original is left as it was


@pytest.mark.parametrize(("mean", "std", "message"), [
    ("x", "1", "mean: must be numbers"), ("0.5", "0", "std: must be > 0"), ("0.5", None, "mean: give both"),
    ("0.1,0.2", "0.3,0.4", "mean: need 1 or 3 values")])
def test_with_normalization_refuses_invalid_values_by_name(files, mean, std, message):
    r18 = load_model(files["r18"], arch="torchvision:resnet18", input_size=32, device="cpu")
    with pytest.raises(ValueError, match=message):
        with_normalization(r18, mean, std)
    with pytest.raises(ValueError, match="source: must be one of"):
        with_normalization(r18, None, None, source="guessed")


def test_the_cli_warns_when_it_assumes_a_normalization_and_not_when_told(files, tmp_path, capsys):
    """certify-image cannot ask as the app does: an assumed normalization is said on stderr, and recorded."""
    import io

    from PIL import Image

    from rs_core.cli.main import main

    image = tmp_path / "one.png"
    Image.new("L", (28, 28), 0).save(image)
    def run(*extra: str, out: str) -> int:
        return main(["certify-image", str(files["bare"]), str(image), "0.5", "--N0", "10", "--N", "20",
                     "--device", "cpu", "--no-progress", "--out", str(tmp_path / out), *extra])

    assert run(out="a.json") == 0
    err = capsys.readouterr().err
    assert "warning: bare.onnx: normalization assumed: the model normalizes itself" in err
    assert json.loads((tmp_path / "a.json").read_text())["model"]["normalization"].startswith("assumed")
    assert run("--no-normalize", out="b.json") == 0
    assert "warning" not in capsys.readouterr().err
    buffer = io.StringIO()
    from rs_core.cli.model import warn_if_assumed

    warn_if_assumed(load_model(files["exported"], device="cpu"), "mnist.onnx", out=buffer)
    assert buffer.getvalue() == ""  # declared by the file: nothing to say
