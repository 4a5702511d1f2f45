"""The sidebar's denoiser (denoised smoothing) through the entrypoint with AppTest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from rs_core import CertifyStream
from rs_core.data import example_image, prepare_input
from rs_core.logs.verify import combined_sha256
from rs_core.models.architectures import DnCNN
from rs_core.models.checkpoints import CHECKPOINTS_DIR, load_checkpoint, save_checkpoint
from rs_core.models.denoisers import DENOISER_KIND
from rs_core.models.shipped import default_model
from widgets.sidebar import LOCAL

APP = str(Path(__file__).resolve().parents[1] / "app.py")
MNIST_050 = CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar"


def _denoiser_bytes(channels: int = 1, sigma: float = 0.25) -> bytes:
    """A denoiser checkpoint (the identity a fresh DnCNN is) for 28×28 grey or 32×32 colour images."""
    import tempfile

    arch, model, shape = (("dncnn_mnist", DnCNN(1, 6, 32), [1, 28, 28]) if channels == 1
                          else ("dncnn_cifar", DnCNN(3, 6, 32), [3, 32, 32]))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "d.pth.tar"
        save_checkpoint(p, model, arch, epoch=1,
                        meta={"kind": DENOISER_KIND, "sigma": sigma, "dataset": "mnist", "input_shape": shape})
        return p.read_bytes()


def _page(n_max: int = 500) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/Certify.py").run()
    at.number_input(key="n_max").set_value(n_max)
    at.radio(key="source").set_value("example").run()
    return at


def _upload_denoiser(at: AppTest, name: str, data: bytes) -> AppTest:
    at.selectbox(key="denoiser").set_value(LOCAL).run()
    at.sidebar.file_uploader(key="denoiser_upload").set_value([(name, data, "application/octet-stream")])
    return at.run()


def test_a_denoiser_file_is_used_shown_and_recorded():
    at = _upload_denoiser(_page(), "mine.pth.tar", _denoiser_bytes(sigma=0.25))
    assert not at.exception and not at.sidebar.error
    assert at.number_input(key="sigma").value == 0.25  # σ follows the denoiser, as it follows a model
    at.number_input(key="sigma").set_value(0.5).run()
    assert any("trained for σ = 0.25" in w.value for w in at.sidebar.warning)  # a warning, not an error
    assert any("what the classifier gets: the same samples after the denoiser" in c.value for c in at.caption)
    at.button(key="start").click().run()
    run = at.session_state["run"]
    assert run.job.wait(120)
    at.run()
    assert not at.exception
    den = run.model["denoiser"]
    assert den["file"] == "mine.pth.tar" and den["sigma_trained"] == 0.25 and len(den["sha256"]) == 64
    assert run.model["sha256"] == combined_sha256(run.model["classifier_sha256"], den["sha256"])
    # The identity denoiser changes no vote: the same counts as plain CERTIFY with the same seed.
    loaded = load_checkpoint(default_model().path)  # the sidebar's model
    x = prepare_input(example_image("chelsea"), loaded.input_shape, invert=None, frame_digit=True)
    ref = CertifyStream(loaded.model, x, 0.5, n0=100, n_max=500, batch_size=1000, seed=0).run()
    np.testing.assert_array_equal(run.job.certificate.counts, ref.counts)


def test_a_classifier_or_a_denoiser_for_other_images_is_refused_and_not_used():
    at = _upload_denoiser(_page(), "classifier.pth.tar", MNIST_050.read_bytes())
    assert any("classifier.pth.tar is not a denoiser" in e.value for e in at.sidebar.error)
    assert at.session_state["settings"].denoiser is None
    at = _upload_denoiser(_page(), "rgb.pth.tar", _denoiser_bytes(channels=3))
    assert any("denoiser: does not take images of shape (1, 28, 28)" in e.value for e in at.sidebar.error)
    assert at.session_state["settings"].denoiser is None and not at.exception


def test_shipped_denoisers_for_the_models_input_size_are_offered_and_a_clean_model_is_explained():
    at = _page()
    at.selectbox(key="model").set_value("mnist/mnist_cnn/clean").run()
    assert any("trained without noise" in i.value for i in at.sidebar.info)
    options = at.selectbox(key="denoiser").options
    assert any("dncnn_mnist · σ = 0.50 · stability" in o for o in options)
    at.selectbox(key="denoiser").set_value("mnist/denoisers/dncnn_mnist/noise_0.50_stability").run()
    s = at.session_state["settings"]
    assert s.denoiser is not None and s.denoiser.sigma == 0.5 and not at.sidebar.warning
    assert s.model_record()["denoiser"]["objective"] == "stability"
    # A CIFAR model is offered no MNIST denoiser.
    at.selectbox(key="model").set_value("cifar10-partial/cifar_cnn/noise_0.25").run()
    assert not any("dncnn_mnist" in o for o in at.selectbox(key="denoiser").options)
