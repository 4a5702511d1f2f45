"""Model uploads in Chromium: the limit the sidebar states is the one the server enforces (RS_MODEL_UPLOAD_MB, and
.streamlit/config.toml's server.maxUploadSize for a plain `streamlit run app.py`); a 50 MB model goes through the
default server and certifies; a bigger file than the limit gets a message; a file that declares no normalization is
asked about before anything runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from browser_kit import NEEDS_CHROMIUM, server, set_number, shot, wait_text

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = NEEDS_CHROMIUM

ERRORS = "[data-testid='stAlertContentError'], [data-testid='stException']"


def _wide_mnist_mlp(path: Path, hidden: int = 16_000) -> Path:
    """An MNIST-shaped MLP (784 → hidden → 10, random weights) as ONNX with no RS Lab metadata: ~50 MB at 16,000
    hidden units, the size of an ImageNet ResNet-18 (the issue's 46.8 MB), and it declares no preprocessing."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((784, hidden)) / 28).astype(np.float32)
    w2 = (rng.standard_normal((hidden, 10)) / np.sqrt(hidden)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(np.zeros(hidden, np.float32), "b1"),
             numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(np.zeros(10, np.float32), "b2")]
    nodes = [helper.make_node("Flatten", ["image"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]), helper.make_node("MatMul", ["h2", "w2"], ["s0"]),
             helper.make_node("Add", ["s0", "b2"], ["scores"])]
    graph = helper.make_graph(nodes, "wide_mlp", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                                ["batch", 1, 28, 28])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _choose_own_model(page, sidebar) -> None:
    sidebar.get_by_role("combobox", name="Model", exact=True).click()
    page.get_by_role("option", name="Your model file…", exact=True).click()


def test_a_50_mb_model_is_read_by_the_default_server_asked_about_and_certifies(app_url, page, tmp_path_factory):
    work = tmp_path_factory.mktemp("big_model")
    model = _wide_mnist_mlp(work / "wide_mlp.onnx")
    assert 45e6 < model.stat().st_size < 60e6
    page.goto(f"{app_url}/Certify")
    wait_text(page, "Certify an input")
    sidebar = page.locator("[data-testid='stSidebar']")
    _choose_own_model(page, sidebar)
    uploader = sidebar.locator("[data-testid='stFileUploader']").filter(has_text="Model file (up to 200 MB)")
    uploader.locator("input[type='file']").set_input_files(str(model))
    # Read by the server (no HTTP 413): the file declares no normalization, so the sidebar asks before anything runs.
    question = sidebar.locator("[data-testid='stRadio']").filter(has_text="wide_mlp.onnx does not declare one")
    question.wait_for(timeout=120_000)
    assert "normalization: not declared" in sidebar.inner_text()
    main = page.locator("[data-testid='stMain']")
    main.get_by_text("does not declare how its input is normalized", exact=False).first.wait_for(timeout=30_000)
    assert main.get_by_role("button", name="Start", exact=True).count() == 0  # nothing can run yet
    shot(page, "own_model_normalization_question.png", tmp_path_factory)
    question.get_by_text("the model normalizes itself", exact=False).click()
    card = sidebar.locator("[data-testid='stCaptionContainer']").filter(has_text="chosen by the user")
    card.wait_for(timeout=60_000)
    assert "1×28×28" in card.inner_text() and "the model normalizes itself" in card.inner_text()
    set_number(page, "n max (estimation)", "500")
    # An example image: nothing to upload (with the data sets on the server the page may have opened on a test
    # image of the shipped model's data set, which this file does not name).
    main.get_by_text("Example image", exact=True).click()
    start = main.get_by_role("button", name="Start", exact=True)
    start.wait_for(timeout=30_000)
    start.click()
    done = page.locator("[data-testid='stAlert']").filter(has_text=re.compile(r"is certified within|^Abstain"))
    done.first.wait_for(timeout=180_000)
    assert page.locator(ERRORS).count() == 0
    shot(page, "own_model_50mb_certified.png", tmp_path_factory)


def test_an_over_limit_model_upload_gets_a_readable_message(page, tmp_path, tmp_path_factory):
    """The limit is RS_MODEL_UPLOAD_MB (never more than the server's); the browser refuses a bigger file before
    sending it, and says so in words next to the file (not only a red icon), with the server-folder alternative."""
    big = tmp_path / "big.onnx"
    big.write_bytes(os.urandom(2_500_000))
    with server({"RS_MODEL_UPLOAD_MB": "1"}) as (url, _pid):
        page.goto(f"{url}/Certify")
        wait_text(page, "Certify an input")
        sidebar = page.locator("[data-testid='stSidebar']")
        _choose_own_model(page, sidebar)
        uploader = sidebar.locator("[data-testid='stFileUploader']").filter(has_text="Model file (up to 1 MB)")
        uploader.locator("input[type='file']").set_input_files(str(big))
        uploader.get_by_text("File must be 1.0MB or smaller.").wait_for(timeout=30_000)
        text = sidebar.inner_text()
        assert "Model uploads are limited to 1 MB" in text and "RS_MODELS_DIR" in text
        # Streamlit's own words are for screen readers only (a 1-pixel alert): the page says it in plain sight.
        main = page.locator("[data-testid='stMain']")
        said = main.get_by_text("a file over 1 MB is refused by your browser", exact=False).first
        said.wait_for(timeout=30_000)
        assert "put it in the server's model folder (RS_MODELS_DIR) instead" in said.inner_text()
        shot(page, "own_model_over_limit.png", tmp_path_factory)


def test_make_runs_server_enforces_the_limit_the_sidebar_states(page, tmp_path):
    """Started as `RS_MODEL_UPLOAD_MB=3 make run` starts it (the variable, and --server.maxUploadSize 3): a 2.5 MB
    model is read, a 3.5 MB file is refused in the browser with the message."""
    ok = _wide_mnist_mlp(tmp_path / "small_mlp.onnx", hidden=800)  # 2.5 MB
    big = tmp_path / "big.onnx"
    big.write_bytes(os.urandom(3_500_000))
    with server({"RS_MODEL_UPLOAD_MB": "3"}, ["--server.maxUploadSize", "3"]) as (url, _pid):
        page.goto(f"{url}/Certify")
        wait_text(page, "Certify an input")
        sidebar = page.locator("[data-testid='stSidebar']")
        _choose_own_model(page, sidebar)
        uploader = sidebar.locator("[data-testid='stFileUploader']").filter(has_text="Model file (up to 3 MB)")
        uploader.locator("input[type='file']").set_input_files(str(ok))
        sidebar.locator("[data-testid='stRadio']").filter(has_text="small_mlp.onnx does not declare one").wait_for(
            timeout=60_000)
        uploader.locator("input[type='file']").set_input_files(str(big))
        uploader.get_by_text("File must be 3.0MB or smaller.").wait_for(timeout=30_000)
        assert "Model uploads are limited to 3 MB" in sidebar.inner_text()
        # The browser keeps the file in use and marks the refused one with a red icon; the caption under them says
        # what the icon means and where a bigger model goes (the server never sees the refused file).
        text = sidebar.inner_text()
        assert "your browser refuses a bigger file, with a red icon next to it" in text and "RS_MODELS_DIR" in text
        assert "small_mlp.onnx does not declare one" in text  # the file in use is still the one asked about
        assert page.locator("[data-testid='stException']").count() == 0
