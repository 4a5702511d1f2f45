"""pages/Certify.py through the entrypoint with Streamlit's AppTest: the live path, Stop, the certificate, bad
uploads, several sessions, the scheduler's queue."""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest
from test_data import _png_claiming

from rs_core import CertifyStream, cohen_radius, lecuyer_radius, li_radius
from rs_core.cli.main import main as cli_main
from rs_core.data import EXAMPLE_IMAGES, data_dir, example_image, get_dataset, load_image, prepare_input
from rs_core.models.checkpoints import CHECKPOINTS_DIR, load_checkpoint
from rs_core.rounding import floor_str
from rs_core.smoothing.seeding import predict_seed
from widgets import inputs, report
from widgets.sidebar import LOCAL

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
MNIST_050 = CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar"
needs_mnist = pytest.mark.skipif(not (data_dir() / "mnist" / "MNIST" / "raw").exists(),
                                 reason=f"no MNIST under RS_DATA_DIR={data_dir()}")


def _png(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _digit_png() -> bytes:
    img = Image.new("L", (120, 120), 255)
    img.paste(0, (55, 15, 68, 105))  # a dark "1" on white paper
    return _png(img)


def _page(model: str = "mnist/mnist_cnn/noise_0.50", **settings) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/Certify.py").run()
    at.selectbox(key="model").set_value(model).run()
    for key, value in settings.items():
        at.number_input(key=key).set_value(value)
    return at.run()


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    """Choose Upload (the page opens on an input that needs none) and upload ``data`` as ``name``."""
    if at.radio(key="source").value != "upload":
        at.radio(key="source").set_value("upload").run()
    _image_uploader(at).set_value([(name, data, "application/octet-stream")])
    return at.run()


def _image_uploader(at: AppTest):
    """The page's image uploader (its key changes after Remove image: Streamlit cannot empty an uploader)."""
    return next(u for u in at.main.get("file_uploader") if u.key == "upload" or u.key.startswith("upload."))


def _finish(at: AppTest, timeout: float = 120):
    run = at.session_state["run"]
    assert run.job.wait(timeout), "the certification did not end"
    at.run()
    assert not at.exception, at.exception
    return run


def _table(at: AppTest, index: int) -> dict[str, str]:
    t = at.table[index].value
    return dict(zip(t.iloc[:, 0].tolist() if t.columns[0] == "" else t.index, t["value"].tolist()))


def test_upload_a_digit_certify_to_the_end_and_download_the_certificate(tmp_path):
    at = _page(n_max=4000, batch=1000, seed=5)
    at = _upload(at, "one.png", _digit_png())
    assert not at.exception and not at.error
    assert any("What the model sees" in m.value for m in at.markdown)
    assert at.button(key="start").disabled is False
    at.button(key="start").click().run()
    run = _finish(at)
    cert = run.job.certificate
    # The page ran the engine on exactly the preprocessed upload, with the sidebar's settings.
    loaded = load_checkpoint(MNIST_050)
    x = prepare_input(load_image(_digit_png()), loaded.input_shape, invert=None, frame_digit=True)
    ref = CertifyStream(loaded.model, x, 0.5, n0=100, n_max=4000, alpha=0.001, batch_size=1000, seed=5).run()
    np.testing.assert_array_equal(cert.counts, ref.counts)
    assert (cert.prediction, cert.radius, cert.stop_reason) == (ref.prediction, ref.radius, "n_max")
    assert ref.prediction == 1
    assert any(f"within ℓ2 radius **{floor_str(cert.radius)}**" in s.value for s in at.success)
    # Both ceilings at the run's n max, the bound this radius used said first (issue 27: one story).
    from rs_core.smoothing.bounds import largest_radius

    ceilings = {m.label: m.value for m in at.metric}
    assert floor_str(largest_radius(0.5, 4000, 0.001)) in ceilings.values()
    assert floor_str(largest_radius(0.5, 4000, 0.001, bound=cert.bound)) in ceilings.values()
    assert any("radii use the **anytime** bound" in c.value for c in at.caption)
    certify_rows = _table(at, 0)
    assert certify_rows["class"] == "1" and certify_rows["n"] == "4,000" and certify_rows["seed"] == "5"
    assert certify_rows["model sha256"].startswith(loaded.sha256[:16])
    predict_rows = _table(at, 1)
    assert predict_rows["class"] == "1" and predict_rows["n"] == "1,000"
    assert predict_rows["seed"] == str(predict_seed(5))  # PREDICT's own samples, derived from CERTIFY's seed
    radii = at.table[2].value
    p = cert.p_lower
    assert radii["radius for these counts"].tolist() == [floor_str(float(f(p, 1 - p, 0.5)))
                                                         for f in (cohen_radius, li_radius, lecuyer_radius)]
    # The download serves this report (the browser test downloads it for real).
    assert len(at.get("download_button")) == 1
    doc = json.loads(json.dumps(report.certificate_report(run)))
    assert doc["certificate"]["radius"] == cert.radius and doc["certificate"]["counts"] == cert.counts.tolist()
    assert doc["model"]["sha256"] == loaded.sha256 and doc["predict"]["prediction"] == 1
    assert doc["radii_other_bounds"]["Cohen et al. (tight)"] == radii["radius for these counts"][0]
    # It names the input and the model file, so anyone can check they have the same ones.
    assert doc["input"]["file_sha256"] == hashlib.sha256(_digit_png()).hexdigest()
    assert doc["input"]["sha256_float32"] == hashlib.sha256(x.float().numpy().tobytes()).hexdigest()
    assert doc["model"]["file"] == "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar"
    assert doc["certifications_of_this_input_in_the_session"] == 1
    assert doc["input"]["options"] == {"invert": None, "frame_digit": True, "model_preprocess": True}
    # Anyone can re-run it: `verify` reproduces the app's certificate from the JSON, the model file and the upload.
    (tmp_path / "cert.json").write_text(json.dumps(doc))
    (tmp_path / "one.png").write_bytes(_digit_png())
    assert cli_main(["verify", str(tmp_path / "cert.json"), str(MNIST_050), str(tmp_path / "one.png")]) == 0
    # The Bounds page will mark this certificate.
    assert at.session_state["last_certificate"]["radius"] == cert.radius


def test_live_view_then_stop_keeps_a_valid_certificate_and_no_extra_batches():
    at = _page(n_max=50_000_000, batch=200)
    at = _upload(at, "one.png", _digit_png())
    at.button(key="start").click().run()
    run = at.session_state["run"]
    deadline = time.time() + 300  # a hang guard, not a speed check
    while (run.job.snapshot is None or run.job.snapshot.n < 2000) and time.time() < deadline:
        time.sleep(0.05)
    at.run()  # the live view while sampling runs
    assert not at.exception and not run.job.done
    assert len(at.get("plotly_chart")) >= 1 and at.get("progress")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["top class (n0 votes)"] == "1"
    assert float(metrics["pA ≥ (anytime bound)"]) > 0.5 and float(metrics["samples/s"].replace(",", "")) > 0
    at.button(key="run_stop").click().run()
    assert run.job.wait(30)
    batches_at_stop = run.job.batches
    time.sleep(0.5)
    assert run.job.batches == batches_at_stop and not run.job._thread.is_alive()
    at.run()
    assert not at.exception
    cert = run.job.certificate
    assert cert.stop_reason == "stopped" and 2000 <= cert.n < 50_000_000 and cert.bound == "anytime-beta-mixture"
    assert cert.prediction == 1 and cert.radius > 0
    assert any("Ended: stopped" in c.value for c in at.caption)
    # PREDICT did not run after Stop; the button runs it on fresh samples.
    assert run.job.prediction is None
    at.button(key="run_predict").click().run()
    assert run.job.prediction is not None and _table(at, 1)["class"] == "1"


def test_target_radius_stops_once_certified():
    at = _page(n_max=10_000_000, batch=500)
    at = _upload(at, "one.png", _digit_png())
    at.checkbox(key="use_target").check().run()
    at.number_input(key="target").set_value(0.5)
    at.run()
    at.button(key="start").click().run()
    cert = _finish(at).job.certificate
    assert cert.stop_reason == "target_certified" and cert.radius >= 0.5 and cert.n < 10_000_000
    assert any("target radius certified" in c.value for c in at.caption)


@needs_mnist
def test_test_image_shows_its_true_label():
    at = _page(n_max=2000, batch=1000)
    at.radio(key="source").set_value("test").run()
    at.number_input(key="test_index").set_value(3).run()
    label = get_dataset("mnist", "test")[3][1]
    assert any(f"True label: **{label}**" in c.value for c in at.caption)
    at.button(key="start").click().run()
    run = _finish(at)
    assert run.true_label == label and "test image 3" in run.source
    assert any("(the true label)" in s.value or "true label:" in s.value for s in at.success) or at.warning


def test_example_image_on_a_cifar_model():
    at = _page("cifar10-partial/cifar_cnn/noise_0.25", n_max=500, batch=250)
    at.radio(key="source").set_value("example").run()
    at.selectbox(key="example").set_value("chelsea").run()
    assert not at.exception and not at.error
    at.button(key="start").click().run()
    run = _finish(at)
    assert run.x.shape == (3, 32, 32) and run.job.certificate.n == 500
    assert run.class_names[3] == "cat"


def _bad_uploads():
    data = _png(Image.effect_noise((200, 200), 50).convert("RGB"))
    return [
        ("empty.png", b"", "the file is empty"),
        ("notes.png", b"these are notes, not a picture", "not an image in a supported format"),
        ("half.png", data[: len(data) // 2], "truncated or corrupt"),
        ("bomb.png", _png_claiming(30_000, 30_000), "decompression bomb"),  # ~1 kB that would decode to 900 Mpx
        ("huge.png", _png_claiming(8000, 8000), "8000×8000 pixels is too large"),
        # A TIFF named .png: only the allow-listed decoders run.
        ("tiff_named.png", _png(Image.new("RGB", (8, 8)), "TIFF"), "not an image in a supported format"),
    ]


@pytest.mark.parametrize("name, data, message", _bad_uploads(), ids=[b[0] for b in _bad_uploads()])
def test_bad_uploads_show_a_message_not_a_traceback(name, data, message):
    at = _upload(_page(), name, data)
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(message in e and name in e for e in errors), errors
    assert at.button(key="start").disabled


@pytest.mark.parametrize("make, fmt, kw", [
    (lambda: Image.fromarray(np.full((40, 40), 40000, dtype=np.uint16)), "PNG", {}),        # 16-bit
    (lambda: Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG", {}),
    (lambda: Image.new("P", (40, 40), 3), "PNG", {"transparency": 3}),                       # palette + transparency
    (lambda: Image.new("RGBA", (40, 40), (255, 0, 0, 128)), "PNG", {}),
    (lambda: Image.new("RGB", (40, 40), (0, 0, 255)), "GIF", {}),
])
@pytest.mark.parametrize("model", ["mnist/mnist_cnn/noise_0.25", "cifar10-partial/cifar_cnn/noise_0.25"])
def test_odd_image_modes_are_converted(make, fmt, kw, model):
    at = _upload(_page(model), f"odd.{fmt.lower()}", _png(make(), fmt, **kw))
    assert not at.exception and not at.error
    assert at.button(key="start").disabled is False
    assert len(at.get("image")) == 2  # the upload's thumbnail; the input and its noisy copies


def test_exif_rotation_is_applied_before_the_model_sees_it():
    img = Image.new("L", (60, 30), 0)
    img.paste(255, (0, 0, 30, 30))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display: the white half ends on top
    at = _page(n_max=200, batch=200)
    at.radio(key="source").set_value("upload").run()  # with the data set the page opens on a test image
    at.radio(key="invert").set_value("no")
    at.checkbox(key="frame").uncheck()
    at = _upload(at, "rotated.jpg", _png(img, "JPEG", exif=exif))
    assert not at.exception and not at.error
    at.button(key="start").click().run()
    x = _finish(at).x[0]
    assert float(x[:10].mean()) > 0.8 and float(x[-10:].mean()) < 0.2


def test_sigma_other_than_training_warns_and_is_used():
    at = _page(sigma=1.0, n_max=500, batch=500)
    assert any("App. H.3" in w.value for w in at.sidebar.warning)
    at = _upload(at, "one.png", _digit_png())
    at.button(key="start").click().run()
    assert _finish(at).job.certificate.sigma == 1.0


def test_choosing_another_model_resets_sigma_to_its_training_sigma():
    at = _page(sigma=0.8)
    at.selectbox(key="model").set_value("mnist/mnist_cnn/noise_1.00").run()
    assert at.number_input(key="sigma").value == 1.0 and not at.sidebar.warning


def test_a_local_checkpoint_file_is_loaded_safely(tmp_path):
    at = _page()
    at.selectbox(key="model").set_value(LOCAL).run()
    assert any("Upload a model file" in e.value for e in at.sidebar.error)
    at.sidebar.file_uploader(key="ckpt_upload").set_value([("mine.pth.tar", MNIST_050.read_bytes(),
                                                               "application/octet-stream")])
    at.run()
    assert not at.exception and not at.sidebar.error
    assert at.number_input(key="sigma").value == 0.5  # from the file's metadata
    assert any(load_checkpoint(MNIST_050).sha256[:12] in c.value for c in at.sidebar.caption)
    at = _upload(at, "one.png", _digit_png())
    at.number_input(key="n_max").set_value(500)
    at.run()
    at.button(key="start").click().run()
    assert _finish(at).job.certificate.prediction == 1


class _Payload:
    def __reduce__(self):
        return (exec, ("open('/tmp/rslab-pwned', 'w').write('x')",))


@pytest.mark.parametrize("kind", ["pickle payload", "not a checkpoint"])
def test_a_malicious_or_garbage_checkpoint_is_refused(kind):
    Path("/tmp/rslab-pwned").unlink(missing_ok=True)
    if kind == "pickle payload":
        buf = io.BytesIO()
        torch.save({"arch": "mnist_cnn", "state_dict": {}, "evil": _Payload()}, buf)
        data = buf.getvalue()
    else:
        data = b"PK\x03\x04 this is not a torch file"
    at = _page()
    at.selectbox(key="model").set_value(LOCAL).run()
    at.sidebar.file_uploader(key="ckpt_upload").set_value([("evil.pth", data, "application/octet-stream")])
    at.run()
    assert not at.exception
    assert any("evil.pth" in e.value and "checkpoint:" in e.value for e in at.sidebar.error)
    assert not Path("/tmp/rslab-pwned").exists()
    assert any("evil.pth" in i.value for i in at.info)  # the page says why it cannot certify


@pytest.mark.slow
def test_several_sessions_certify_at_once_each_get_their_own_result():
    """Three sessions (AppTest instances: one process, the cached model and the device lock shared) certify at
    once; each result equals a solo run with its seed. (AppTest itself is not thread-safe, so the Start clicks
    are sequential; the certifications then run concurrently in their job threads.)"""
    seeds, pages = [11, 12, 13], []
    for seed in seeds:
        pages.append(_upload(_page(n_max=30_000, batch=500, seed=seed), "one.png", _digit_png()))
    for at in pages:
        at.button(key="start").click().run()
    jobs = [at.session_state["run"].job for at in pages]
    assert all(j.running for j in jobs), "the sessions should be sampling at the same time"
    loaded = load_checkpoint(MNIST_050)
    x = prepare_input(load_image(_digit_png()), loaded.input_shape, invert=None, frame_digit=True)
    for seed, at in zip(seeds, pages):
        cert = _finish(at).job.certificate
        ref = CertifyStream(loaded.model, x, 0.5, n0=100, n_max=30_000, batch_size=500, seed=seed).run()
        np.testing.assert_array_equal(cert.counts, ref.counts)
        np.testing.assert_array_equal(cert.counts_selection, ref.counts_selection)
        assert cert.seed == seed and cert.radius == ref.radius


def test_an_old_result_is_marked_when_the_input_or_a_setting_changes():
    at = _upload(_page(n_max=500), "one.png", _digit_png())
    at.button(key="start").click().run()
    _finish(at)
    assert not any("earlier choice" in w.value for w in at.warning)  # the result is for what is shown
    img = Image.new("L", (120, 120), 255)
    img.paste(0, (20, 55, 100, 68))  # another picture
    at = _upload(at, "other.png", _png(img))
    warned = [w.value for w in at.warning if "earlier choice" in w.value]
    assert warned and "the input" in warned[0] and "one.png" in warned[0], warned
    at = _upload(at, "one.png", _digit_png())  # back to the certified input: the result is current again
    assert not any("earlier choice" in w.value for w in at.warning)
    at.number_input(key="sigma").set_value(0.25).run()
    warned = [w.value for w in at.warning if "earlier choice" in w.value]
    assert warned and "σ (0.5 → 0.25)" in warned[0] and "the input" not in warned[0], warned


def test_the_radius_and_an_abstention_are_explained_in_plain_words():
    text = report.radius_in_words(1.0, (1, 28, 28))
    assert "all 784 values that is 0.0357 per value ≈ 9 of 255 grey levels" in text  # 1/28, 255/28 = 9.1
    assert "one value may change by up to 1.0000" in report.radius_in_words(2.5, (3, 32, 32))
    at = _upload(_page(n_max=500), "one.png", _digit_png())
    at.button(key="start").click().run()
    cert = _finish(at).job.certificate
    assert any(c.value == report.radius_in_words(cert.radius, (1, 28, 28)) for c in at.caption)
    # A run that cannot certify: σ far above the model's, stopped after the first batch.
    at.number_input(key="sigma").set_value(10.0)
    at.number_input(key="n_max").set_value(100)
    at.run()
    at.button(key="start").click().run()
    run = _finish(at)
    assert run.job.certificate.prediction == -1  # seed 0: deterministic
    assert any(c.value == report.ABSTAIN_ADVICE for c in at.caption)


def test_certifying_one_input_again_counts_the_runs_and_shows_the_multiple_testing_caveat():
    at = _upload(_page(n_max=500, batch=500), "one.png", _digit_png())
    at.button(key="start").click().run()
    _finish(at)
    assert not any("times in this session" in i.value for i in at.info)
    at.number_input(key="seed").set_value(1).run()
    at.button(key="start").click().run()
    run = _finish(at)
    caveat = [i.value for i in at.info if "times in this session" in i.value]
    assert caveat and "2 times" in caveat[0] and "1 − 2·α" in caveat[0], caveat
    assert report.certificate_report(run)["certifications_of_this_input_in_the_session"] == 2


def test_when_the_job_cap_is_reached_another_session_waits_in_a_visible_queue(monkeypatch):
    from rs_core.smoothing import jobs

    monkeypatch.setattr(jobs, "_DEFAULT", jobs.Scheduler(max_running=1))
    first = _upload(_page(n_max=50_000_000, batch=200), "one.png", _digit_png())
    second = _upload(_page(n_max=500, batch=250, seed=3), "one.png", _digit_png())
    first.button(key="start").click().run()
    second.button(key="start").click().run()
    waiting = second.session_state["run"].job
    assert waiting.queued and waiting.position() == 1
    assert any("number 1 in the queue" in i.value and "at most 1 at once" in i.value for i in second.info)
    first.button(key="run_stop").click().run()
    assert first.session_state["run"].job.wait(60)
    assert waiting.wait(120) and waiting.certificate.n == 500 and waiting.certificate.stop_reason == "n_max"
    second.run()
    assert not second.exception and any("certified within" in m.value for m in second.success)


def test_stop_while_queued_ends_the_run_without_a_sample(monkeypatch):
    from rs_core.smoothing import jobs

    monkeypatch.setattr(jobs, "_DEFAULT", jobs.Scheduler(max_running=1))
    first = _upload(_page(n_max=50_000_000, batch=200), "one.png", _digit_png())
    second = _upload(_page(n_max=500), "one.png", _digit_png())
    first.button(key="start").click().run()
    second.button(key="start").click().run()
    second.button(key="run_stop").click().run()
    job = second.session_state["run"].job
    assert job.done and job.certificate.n == 0
    second.run()
    assert any("Stopped while waiting in the queue" in i.value for i in second.info)
    first.session_state["run"].job.stop()
    assert first.session_state["run"].job.wait(60)


# Issue 27: inputs that survive page switches and model menu round trips; a page that opens ready; plain hints.


def _certify(at: AppTest) -> AppTest:
    at.button(key="start").click().run()
    _finish(at)
    return at


def _stale(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if "earlier choice" in w.value]


def _seen(at: AppTest) -> str:
    return " ".join(m.value for m in at.markdown if "What the model sees" in m.value)


def _away_and_back(at: AppTest, page: str = "pages/Bounds.py") -> AppTest:
    at.switch_page(page).run()
    assert not at.exception
    return at.switch_page("pages/Certify.py").run()


def test_the_page_opens_on_an_input_that_needs_no_upload_and_every_disabled_start_says_why():
    at = _page(n_max=500, batch=500)
    assert not at.exception
    # A test image where the data set is on this server, else an example image: Start works at once.
    assert at.radio(key="source").value == inputs.opening_source("mnist")
    assert at.button(key="start").disabled is False and _seen(at)
    at.radio(key="source").set_value("upload").run()
    assert at.button(key="start").disabled
    assert any(c.value.startswith("Start is disabled: upload an image") for c in at.caption)
    at = _upload(at, "notes.png", b"not a picture")
    assert at.button(key="start").disabled
    assert any(c.value.startswith("Start is disabled: notes.png cannot be used") for c in at.caption)


def test_an_upload_survives_a_page_switch_and_its_result_stays_current():
    at = _certify(_upload(_page(n_max=500, batch=500), "one.png", _digit_png()))
    certified = at.session_state["run"].input_sha256
    at = _away_and_back(at)
    assert at.radio(key="source").value == "upload"
    assert "upload one.png" in _seen(at)  # the kept file is what the model sees …
    assert any("In use: **one.png**" in c.value for c in at.caption)  # … and the page says which file it is
    assert not _stale(at) and at.button(key="start").disabled is False
    at = _certify(at)
    run = at.session_state["run"]
    assert run.input_sha256 == certified and run.file_sha256 == hashlib.sha256(_digit_png()).hexdigest()
    assert not _stale(at)


def test_a_model_menu_round_trip_keeps_the_input_and_the_result_current():
    at = _certify(_upload(_page(n_max=500, batch=500), "one.png", _digit_png()))
    certified = at.session_state["run"].input_sha256
    at.selectbox(key="model").set_value(LOCAL).run()  # no file yet: the page draws no input picker
    assert not at.exception
    at.selectbox(key="model").set_value("mnist/mnist_cnn/noise_0.50").run()
    assert "upload one.png" in _seen(at) and not _stale(at)
    at = _certify(at)
    assert at.session_state["run"].input_sha256 == certified and not _stale(at)


def test_a_result_is_marked_outdated_only_when_what_made_it_changed():
    at = _certify(_upload(_page(n_max=500, batch=500), "one.png", _digit_png()))
    same_pixels = _png(Image.open(io.BytesIO(_digit_png())), "BMP")  # another file, the same x
    at = _upload(at, "one.bmp", same_pixels)
    assert _stale(at) and "the input" in _stale(at)[0]  # the certificate names the file by its sha256
    at = _upload(at, "one.png", _digit_png())
    assert not _stale(at)
    at.selectbox(key="model").set_value("mnist/mnist_cnn/noise_1.00").run()
    assert "the model" in _stale(at)[0]
    at.selectbox(key="model").set_value("mnist/mnist_cnn/noise_0.50").run()
    assert not _stale(at)


def test_remove_image_clears_the_kept_upload():
    at = _upload(_page(), "one.png", _digit_png())
    at.button(key="upload_clear").click().run()
    assert not _seen(at) and at.button(key="start").disabled
    assert _image_uploader(at).key != "upload"  # a fresh, empty uploader: the old one would still hold the file
    at = _away_and_back(at)
    assert not _seen(at)  # nothing comes back
    at = _upload(at, "one.png", _digit_png())
    assert "upload one.png" in _seen(at)


def test_example_invert_and_framing_survive_a_page_switch():
    at = _page()
    at.radio(key="source").set_value("example").run()
    at.selectbox(key="example").set_value("rocket").run()
    at.radio(key="invert").set_value("yes").run()
    at.checkbox(key="frame").uncheck().run()
    seen = _seen(at)
    at = _away_and_back(at, "pages/Home.py")
    assert at.selectbox(key="example").value == "rocket" and at.radio(key="invert").value == "yes"
    assert at.checkbox(key="frame").value is False and _seen(at) == seen


def test_the_test_index_survives_a_page_switch(monkeypatch, synthetic_mnist):
    monkeypatch.setenv("RS_DATA_DIR", str(synthetic_mnist))
    inputs.test_set.clear()  # the cached set is per server, not per data folder
    try:
        at = _page(n_max=500, batch=500)
        assert at.radio(key="source").value == "test"  # the data set is here: the page opens on a test image
        at.number_input(key="test_index").set_value(7).run()
        at = _certify(at)
        at = _away_and_back(at)
        assert at.number_input(key="test_index").value == 7 and not _stale(at)
        assert at.session_state["run"].true_label == 7
    finally:
        inputs.test_set.clear()


def test_draw_is_kept_while_a_colour_model_cannot_offer_it():
    at = _page()
    at.radio(key="source").set_value("draw").run()
    assert not at.exception
    assert any(c.value.startswith("Start is disabled: draw a digit") for c in at.caption)
    at.selectbox(key="model").set_value("cifar10-partial/cifar_cnn/noise_0.25").run()
    assert at.radio(key="source").value != "draw" and not at.exception
    at.selectbox(key="model").set_value("mnist/mnist_cnn/noise_0.50").run()
    assert at.radio(key="source").value == "draw"


def test_digit_hint_tells_photos_from_digits():
    from PIL import ImageDraw, ImageFilter

    flagged = {name for name in EXAMPLE_IMAGES if inputs.digit_hint(example_image(name))}
    assert flagged == set(EXAMPLE_IMAGES) - {"horse"}  # a black silhouette on white looks like ink on paper
    assert inputs.digit_hint(load_image(_digit_png())) is None
    seven = Image.new("L", (200, 200), 235)
    ImageDraw.Draw(seven).line([(40, 40), (160, 40), (80, 170)], fill=30, width=18)
    seven = seven.filter(ImageFilter.GaussianBlur(2))
    noisy = np.asarray(seven, dtype=float) + np.random.default_rng(0).normal(0, 12, (200, 200))
    assert inputs.digit_hint(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))) is None  # a phone photo
    warm = Image.merge("RGB", [seven, seven.point(lambda v: v * 0.95), seven.point(lambda v: v * 0.85)])
    assert inputs.digit_hint(warm) is None  # yellowish paper is not "a colour image"
    assert "in colour" in inputs.digit_hint(example_image("coffee"))
    assert "no plain background" in inputs.digit_hint(example_image("camera"))


def test_a_photo_given_to_the_digit_model_gets_a_plain_hint_with_its_result():
    at = _page(n_max=500, batch=500)
    at.radio(key="source").set_value("example").run()
    at.selectbox(key="example").set_value("chelsea").run()
    hint = inputs.digit_hint(example_image("chelsea"))
    assert any(w.value == hint for w in at.warning)  # before Start
    at = _certify(at)
    assert [w.value for w in at.warning].count(hint) == 2  # under the preview and with the result
    assert hint in report.certificate_report(at.session_state["run"])["warnings"]
    at = _upload(at, "one.png", _digit_png())  # a digit: no hint under the preview; the old result keeps its own
    assert [w.value for w in at.warning].count(hint) == 1 and _stale(at)
    fresh = _upload(_page(), "one.png", _digit_png())
    assert not any("trained on handwritten digits" in w.value for w in fresh.warning)
    cifar = _page("cifar10-partial/cifar_cnn/noise_0.25")
    cifar.radio(key="source").set_value("example").run()
    assert not any("trained on handwritten digits" in w.value for w in cifar.warning)  # not a digit model


def test_a_denoised_run_names_the_classifier_and_the_denoiser():
    at = _page("mnist/mnist_cnn/clean", n_max=300, batch=300)
    at.selectbox(key="denoiser").set_value("mnist/denoisers/dncnn_mnist/noise_0.50_mse").run()
    at.radio(key="source").set_value("example").run()
    at = _certify(at)
    run = at.session_state["run"]
    name = report.model_name(run.model)
    assert name.startswith(run.model["label"] + " ∘ ") and run.model["denoiser"]["label"] in name
    assert any(m.value.startswith("**Run:**") and name in m.value for m in at.markdown)
    assert _table(at, 0)["model"] == name
    assert report.model_name({"label": "f"}) == "f"


def test_each_uploader_states_the_limit_its_reader_enforces():
    """The server accepts the model-upload limit for every upload; each other uploader states (and has the browser
    enforce) the smaller limit of what reads it, so a file the page takes is never refused afterwards for its size."""
    from rs_core.untrusted import MAX_IMAGE_BYTES

    at = _page()
    at.radio(key="source").set_value("upload").run()
    assert _image_uploader(at).proto.max_upload_size_mb == MAX_IMAGE_BYTES // 2**20 == 20
