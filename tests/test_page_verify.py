"""pages/Verify.py with Streamlit's AppTest: a certificate re-run from its JSON and its input is identical; an edited
seed or pixel is named; a file that is not a certificate gets a message."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from rs_core.cli.main import main as cli_main
from rs_core.models.shipped import default_model

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
MODEL = default_model().path  # the sidebar's model, which Verify re-runs the certificate with


def _png(pixel: tuple[int, int] | None = None) -> bytes:
    img = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(img).line((30, 8, 34, 56), fill=0, width=7)  # a dark "1" on white
    if pixel is not None:
        img.putpixel(pixel, 100)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> dict:
    """certify-image's JSON (σ = 1.0: votes spread over several classes, so the seed shows in the counts)."""
    work = tmp_path_factory.mktemp("page_verify")
    (work / "one.png").write_bytes(_png())
    assert cli_main(["certify-image", str(MODEL), str(work / "one.png"), "1.0", "--out", str(work / "c.json"),
                     "--N", "1500", "--invert", "auto", "--frame-digit", "--seed", "4", "--device", "cpu",
                     "--no-progress"]) == 0
    return json.loads((work / "c.json").read_text())


def _verify(doc: dict | bytes, image: bytes | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/Verify.py").run()
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    at.file_uploader(key="verify_doc").set_value([("cert.json", data, "application/json")]).run()
    if image is not None:
        at.file_uploader(key="verify_image").set_value([("one.png", image, "image/png")]).run()
        at.button(key="verify_start").click().run()
        run = at.session_state["verify_run"] if "verify_run" in at.session_state else None
        if run is not None:
            assert run.job.wait(120)
            at.run()
    assert not at.exception, at.exception
    return at


def test_a_certificate_re_run_from_its_json_and_its_image_is_identical(certificate):
    at = _verify(certificate, _png())
    assert any("The sidebar's model is the one it names" in m.value for m in at.success)
    assert any(m.value.startswith("**Identical.**") for m in at.success), [m.value for m in at.success]
    run = at.session_state["verify_run"]
    assert run.job.certificate.counts.tolist() == certificate["certificate"]["counts"]


def test_an_edited_seed_is_named_after_the_re_run(certificate):
    doc = json.loads(json.dumps(certificate))
    doc["certificate"]["seed"] = 5
    at = _verify(doc, _png())
    assert at.error and at.error[0].value.startswith("**Not identical.** First difference — "
                                                     "certificate.counts_selection: the seed, σ, n0 or n recorded")


def test_a_changed_pixel_is_named_and_nothing_is_re_run(certificate):
    at = _verify(certificate, _png(pixel=(32, 40)))
    assert at.error and "First difference — input.sha256_float32" in at.error[0].value
    assert "verify_run" not in at.session_state


@pytest.mark.parametrize("data, message", [
    (b"{not json", "cert.json is not JSON"),
    (b"[1, 2]", "cert.json: certificate: not an RS Lab certificate document"),
    (json.dumps({"certificate": {"sigma": 0.5}, "model": {}, "input": {}}).encode(), "(no certificate.alpha)"),
])
def test_a_file_that_is_not_a_certificate_gets_a_message(data, message):
    at = _verify(data)
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
