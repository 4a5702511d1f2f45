"""rs_core/logs/verify.py and `python -m rs_core verify`: a certificate re-run from its JSON, the model file and the
input is identical; a changed model byte, input pixel, σ or seed is named (the app's own certificate round-trips in
tests/test_page_certify.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from rs_core.cli.main import main
from rs_core.data import data_dir
from rs_core.models.checkpoints import CHECKPOINTS_DIR

ROOT = Path(__file__).resolve().parents[1]
MODEL = CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar"
OTHER = CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.25/checkpoint.pth.tar"


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, Path]:
    """A certificate made by `certify-image` as a user runs it (a subprocess), and the image it certified."""
    work = tmp_path_factory.mktemp("verify")
    img = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(img).line((30, 8, 34, 56), fill=0, width=7)  # a dark "1" on white
    png = work / "one.png"
    img.save(png)
    cert = work / "cert.json"
    # σ = 1.0, twice the model's: votes that spread over several classes, so that another seed gives other counts.
    proc = subprocess.run([sys.executable, "-m", "rs_core", "certify-image", str(MODEL), str(png), "1.0", "--out",
                           str(cert), "--N", "2000", "--batch", "300", "--invert", "auto", "--frame-digit",
                           "--seed", "9", "--device", "cpu", "--no-progress"], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    return cert, png


def _verify(cert: Path, model: Path, image: Path, capsys) -> tuple[int, str]:
    code = main(["verify", str(cert), str(model), str(image)])
    return code, capsys.readouterr().out


def test_the_document_records_what_a_re_run_needs(made):
    doc = json.loads(made[0].read_text())
    assert doc["software"]["device_type"] == "cpu" and doc["software"]["torch"] and doc["software"]["rs_core"]
    assert doc["input"]["options"] == {"invert": None, "frame_digit": True, "model_preprocess": False}
    assert len(doc["input"]["sha256_float32"]) == 64
    cert = doc["certificate"]
    assert doc["rounded_down"]["radius"] <= f"{cert['radius']:.4f}" and float(doc["rounded_down"]["radius"]) \
        <= cert["radius"]
    assert float(doc["rounded_down"]["p_lower"]) <= cert["p_lower"]
    assert max(cert["counts"]) < 0.95 * cert["n"]  # mixed votes: the seed shows in the counts


def test_verify_reproduces_the_certificate_at_another_batch_size(made, capsys):
    code, out = _verify(*made[:1], MODEL, made[1], capsys)  # made with --batch 300, re-run in batches of 1000
    assert code == 0 and out.startswith("identical:"), out


def test_a_changed_input_pixel_is_named(made, tmp_path, capsys):
    img = Image.open(made[1]).convert("L")
    img.putpixel((32, 40), 100)  # one pixel of the ink made lighter (inside the digit's frame, so x changes)
    changed = tmp_path / "one.png"
    img.save(changed)
    code, out = _verify(made[0], MODEL, changed, capsys)
    assert code == 1 and out.startswith("differs: input.sha256_float32:") and "pixel" in out, out


def test_another_model_file_is_named(made, tmp_path, capsys):
    code, out = _verify(made[0], OTHER, made[1], capsys)
    assert code == 1 and out.startswith("differs: model.sha256:") and "byte" in out, out
    # One bit of one weight flipped (the low mantissa bit of a float in the first stored tensor): the file still
    # loads, and differs from the certified one by one byte.
    flipped = tmp_path / "model.pth.tar"
    shutil.copy(MODEL, flipped)
    with zipfile.ZipFile(flipped) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
    data = bytearray(flipped.read_bytes())
    header = 30 + int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little") + \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    data[info.header_offset + header] ^= 1
    flipped.write_bytes(bytes(data))
    code, out = _verify(made[0], flipped, made[1], capsys)
    assert code == 1 and out.startswith("differs: model.sha256:"), out


@pytest.mark.parametrize("field, value, named", [
    ("sigma", 0.5, "differs: sigma:"),
    ("seed", 10, "differs: certificate.counts_selection:"),
])
def test_an_edited_sigma_or_seed_is_named(made, tmp_path, capsys, field, value, named):
    doc = json.loads(made[0].read_text())
    doc["certificate"][field] = value
    edited = tmp_path / "cert.json"
    edited.write_text(json.dumps(doc))
    code, out = _verify(edited, MODEL, made[1], capsys)
    assert code == 1 and out.startswith(named), out
    if field == "seed":
        assert "the seed, σ, n0 or n recorded are not those the counts were drawn with" in out


def test_a_file_that_is_not_a_certificate_is_a_one_line_error(made, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main(["verify", str(bad), str(MODEL), str(made[1])]) == 2
    assert "error: certificate: not an RS Lab certificate document (bad.json)" in capsys.readouterr().err


def test_a_test_image_named_by_data_set_and_index(tmp_path, capsys):
    """INPUT as DATASET:INDEX (the original index the certificate's source names); an index not held is an error."""
    from rs_core.data import TensorImages

    data = TensorImages(np.zeros((3, 2, 2, 1), np.uint8), np.array([1, 2, 3]), np.array([40, 7, 12]))
    assert [data.position_of(k) for k in (7, 12, 40, 41)] == [1, 2, 0, None]
    if not (data_dir() / "mnist" / "MNIST" / "raw").exists():
        return
    from rs_core import CertifyStream
    from rs_core.data import get_dataset
    from rs_core.logs.document import certificate_document
    from rs_core.logs.verify import tensor_sha256
    from rs_core.models.checkpoints import load_checkpoint

    loaded = load_checkpoint(MODEL)
    x, _ = get_dataset("mnist", "test")[12]
    cert = CertifyStream(loaded.model, x, 1.0, n0=50, n_max=500, seed=3).run()
    doc = certificate_document(cert, class_names=loaded.class_names, model=loaded.record(),
                               input={"source": "mnist test image 12", "sha256_float32": tensor_sha256(x)})
    (tmp_path / "c.json").write_text(json.dumps(doc))
    assert main(["verify", str(tmp_path / "c.json"), str(MODEL), "mnist:12"]) == 0
    assert main(["verify", str(tmp_path / "c.json"), str(MODEL), "mnist:13"]) == 1
    assert "input.sha256_float32" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "c.json"), str(MODEL), "mnist:99999"]) == 2
    assert "error: input: mnist has no test image 99999 here" in capsys.readouterr().err
