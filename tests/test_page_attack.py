"""The Certify page's "Search for an adversarial example" (issue 29, deliverable 2) through the entrypoint with
AppTest, on the shipped MNIST σ = 0.5 model with small settings: the search runs in the background, the interval
[R, D] is shown with the images, the adversarial input is certified too, the certificate's JSON carries the attack,
invalid settings are refused by name, Stop ends the search, and a newer certificate makes the result outdated."""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from rs_core import ABSTAIN
from widgets import attack, report

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")


def digit_png() -> bytes:
    img = Image.new("L", (120, 120), 255)
    img.paste(0, (55, 15, 68, 105))  # a dark "1" on white paper
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def certified_page(seed: int = 5) -> AppTest:
    """The Certify page with a certificate of an uploaded "1" (n max 2,000: a second of sampling)."""
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/Certify.py").run()
    at.selectbox(key="model").set_value("mnist/mnist_cnn/noise_0.50").run()
    for key, value in {"n_max": 2000, "batch": 1000, "seed": seed}.items():
        at.number_input(key=key).set_value(value)
    at.run()
    if at.radio(key="source").value != "upload":
        at.radio(key="source").set_value("upload").run()
    uploader = next(u for u in at.main.get("file_uploader") if u.key == "upload" or u.key.startswith("upload."))
    uploader.set_value([("one.png", digit_png(), "application/octet-stream")])
    at.run()
    at.button(key="start").click().run()
    run = at.session_state["run"]
    assert run.job.wait(120), "the certification did not end"
    at.run()
    assert not at.exception, at.exception
    return at


def search(at: AppTest, **settings) -> attack.AttackJob:
    for key, value in settings.items():
        at.number_input(key=key).set_value(value)
    at.run()
    at.button(key="atk_start").click().run()
    job = at.session_state[attack.KEY]
    return job


def finish(at: AppTest, job: attack.AttackJob, timeout: float = 240) -> None:
    assert job.wait(timeout), "the search did not end"  # a hang guard, not a speed check
    at.run()
    assert not at.exception, at.exception


def test_the_search_shows_the_interval_images_and_certifies_the_adversarial_input():
    at = certified_page()
    run = at.session_state["run"]
    cert = run.job.certificate
    assert cert.prediction == 1 and cert.radius > 0
    # ε max defaults to a few times the certified radius.
    assert at.number_input(key=attack.EPS_KEY).value == attack.default_eps_max(cert.radius, (1, 28, 28))
    assert at.number_input(key=attack.EPS_KEY).value >= 4 * cert.radius - 0.01
    job = search(at, atk_steps=100, atk_m=16)
    assert not job.done  # it runs in the background: the page came back while it searches
    finish(at, job)
    res = job.result
    assert res is not None and res.found and res.clean_prediction == 1 and res.adv_prediction not in (1, ABSTAIN)
    assert res.distance >= cert.radius  # a sound certificate: no adversarial example inside it
    assert res.seed == cert.seed and res.m == 16 and res.steps <= 100
    text = " ".join(s.value for s in at.success)
    assert f"Certified ≥ {report.floor_str(cert.radius)}" in text and f"D = {res.distance:.4f}" in text
    assert not any("Soundness alarm" in e.value for e in at.error)
    # The line picture with R and D, and the three images: input, adversarial input, amplified perturbation.
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    line = next(f for f in figs if "ℓ2 distance" in f["layout"]["xaxis"]["title"]["text"])
    labels = [t["text"][0] for t in line["data"] if t.get("text")]
    assert f"R = {cert.radius:.4f}" in labels and f"D = {res.distance:.4f}" in labels
    captions = [c for img in at.get("image") for c in img.captions]
    assert any(c.startswith("adversarial x + δ") for c in captions)
    assert any(c.startswith("perturbation δ ×") for c in captions)
    # The adversarial input was certified too, with a fresh seed: another class or an abstention.
    adv = job.adv_certificate
    assert adv is not None and adv.seed == job.adv_seed and adv.seed not in (cert.seed, res.seed)
    assert adv.n0 == cert.n0 and adv.n_max == cert.n_max and adv.sigma == cert.sigma and adv.alpha == cert.alpha
    assert adv.prediction != 1
    assert any("The adversarial input certified too" in m.value for m in (*at.info, *at.warning))
    # The certificate's JSON carries the attack: settings, result, interval, alarm, the adversarial certificate.
    doc = json.loads(json.dumps(report.certificate_report(run)))
    sec = doc["attack"]
    assert sec["settings"]["steps"] == 100 and sec["settings"]["m"] == 16 and sec["settings"]["seed"] == cert.seed
    assert sec["result"]["found"] and sec["result"]["distance"] == res.distance
    assert sec["interval"] == {"certified_at_least": cert.radius, "adversarial_at": res.distance,
                               "none_found_up_to": None}
    assert sec["soundness_alarm"] is False and sec["adversarial_certificate"]["seed"] == adv.seed


def test_invalid_settings_are_refused_by_name_and_start_is_disabled():
    at = certified_page()
    for key, value, name in ((attack.EPS_KEY, 0.0, "ε max"), (attack.EPS_KEY, 100.0, "ε max"),
                             (attack.STEPS_KEY, 0, "steps"), (attack.M_KEY, 0, "m")):
        at.number_input(key=key).set_value(value).run()
        assert any(e.value.startswith(f"{name} must be") for e in at.error), (key, value)
        assert at.button(key="atk_start").disabled
        assert any(c.value.startswith("Search is disabled:") and name in c.value for c in at.caption)
        at.number_input(key=key).set_value({attack.EPS_KEY: 2.0, attack.STEPS_KEY: 10, attack.M_KEY: 8}[key]).run()
    assert not at.button(key="atk_start").disabled
    assert attack.problems(2.0, 10, 8, (1, 28, 28)) == []
    assert attack.problems(math.inf, 10, 8, (1, 28, 28))[0].startswith("ε max")


def test_stop_ends_the_search_within_a_step_and_a_new_certificate_outdates_it():
    at = certified_page()
    run = at.session_state["run"]
    job = search(at, atk_steps=10_000, atk_m=256, atk_eps=0.01)  # tiny budget: nothing to find, all steps run
    deadline = time.time() + 120
    while job.attack.latest() is None and time.time() < deadline:
        time.sleep(0.05)
    at.run()
    assert not job.done and at.button(key="atk_stop")
    at.button(key="atk_stop").click().run()
    assert job.wait(60)
    res = job.result
    assert res.stopped and res.steps < 10_000 and job.adv_certificate is None
    at.run()
    assert any("You stopped the search" in c.value for c in at.caption)
    assert run.extra["attack"]["result"]["stopped"] is True
    # Certify again (another seed): the search's result is about the replaced certificate, marked outdated.
    at.number_input(key="seed").set_value(6).run()
    at.button(key="start").click().run()
    assert at.session_state["run"].job.wait(120)
    at.run()
    assert any(w.value.startswith("Outdated: the last search was about an earlier certificate") for w in at.warning)
    assert "attack" not in at.session_state["run"].extra  # and not in the new certificate's JSON


@pytest.mark.parametrize("radius,shape,expected", [(0.0, (1, 28, 28), 1.0), (1.2, (1, 28, 28), 4.8),
                                                   (50.0, (1, 2, 2), 2.0)])
def test_the_default_eps_max_is_a_few_radii_within_the_cube(radius, shape, expected):
    assert attack.default_eps_max(radius, shape) == expected


def test_a_planted_bug_that_inflates_radii_raises_the_soundness_alarm_and_is_recorded(monkeypatch):
    """CERTIFY with its radius × 10 (a bug the attack exists to catch): the attack finds an adversarial example
    inside the claimed radius, and the page says so loudly and writes it into the certificate's JSON."""
    from rs_core.smoothing.stream import CertifyStream

    honest = CertifyStream.certificate

    def inflated(self):
        cert = honest(self)
        cert.radius *= 10
        return cert

    monkeypatch.setattr(CertifyStream, "certificate", inflated)
    at = certified_page()
    run = at.session_state["run"]
    job = search(at, atk_steps=100, atk_m=16)
    finish(at, job)
    res = job.result
    assert res.found and res.distance < run.job.certificate.radius
    assert any(e.value.startswith("**Soundness alarm:**") for e in at.error)
    line = next(f for f in (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
                if "ℓ2 distance" in f["layout"]["xaxis"]["title"]["text"])
    assert line["layout"]["title"]["text"].startswith("Soundness alarm")
    doc = json.loads(json.dumps(report.certificate_report(run)))
    assert doc["attack"]["soundness_alarm"] is True


def test_a_search_whose_browser_session_ended_is_stopped_and_says_so(monkeypatch):
    """The watcher stops a search once its session has been gone for GRACE_S (a closed or reloaded tab)."""
    from rs_core.attacks import AttackRun
    from rs_core.smoothing.playground import HalfPlane

    monkeypatch.setattr(attack, "GRACE_S", 0.2)
    f, x = HalfPlane(angle=0.0, offset=0.0), torch.tensor([[[-1.0, 0.0]]])
    # A budget far too small to reach the boundary: every one of the 10⁶ steps would run.
    run = AttackRun(f, x, 0.1, eps_max=0.01, steps=1_000_000, m=64, clip=None, n_predict=100)
    job = attack.AttackJob(certificate_job=None, source="test", radius=0.5, clean_class=0, settings={}, attack=run,
                           x=x, adv_seed=1)
    extra: dict = {}
    attack.launch(job, f, "cpu", {}, extra, ["0", "1"], alive=lambda: False)
    assert job.wait(60), "the search of an ended session kept running"
    assert job.cancelled == "the session ended" and job.result.stopped and job.result.steps < 1_000_000
    assert extra["attack"]["cancelled"] == "the session ended"


def test_the_search_settings_survive_a_visit_to_another_page():
    at = certified_page()
    at.number_input(key=attack.STEPS_KEY).set_value(77).run()
    at.number_input(key=attack.EPS_KEY).set_value(2.5).run()
    at.switch_page("pages/Home.py").run()
    at.switch_page("pages/Certify.py").run()
    assert at.number_input(key=attack.STEPS_KEY).value == 77 and at.number_input(key=attack.EPS_KEY).value == 2.5
    assert not at.button(key="atk_start").disabled


def test_the_line_picture_says_none_found_up_to_eps_max_and_marks_an_alarm():
    from widgets import figures

    none = figures.interval_figure(1.2, None, 5.0)
    names = [t.get("name") for t in none["data"]]
    assert "searched: none found up to ε max" in names and "adversarial example found at D" not in names
    assert any(t.get("text") == ["ε max = 5"] for t in none["data"])
    assert none["layout"]["title"]["text"].endswith("none found up to ε max")
    alarm = figures.interval_figure(2.0, 1.5, 8.0)
    assert alarm["layout"]["title"]["text"].startswith("Soundness alarm")
    assert "g's true robustness lies here" not in [t.get("name") for t in alarm["data"]]
    picture, factor = figures.perturbation_display(torch.full((1, 4, 4), 0.05))
    assert factor == pytest.approx(10.0) and picture.max() == 255  # the largest change reaches white


def test_the_chosen_method_runs_and_is_recorded():
    """DDN chosen on the page is the search that runs: its settings, the result and the caption say "ddn"."""
    at = certified_page(seed=6)
    at.radio(key=attack.METHOD_KEY).set_value("ddn").run()
    job = search(at, atk_steps=60, atk_m=16)
    finish(at, job)
    assert job.settings["method"] == "ddn" and job.result is not None and job.result.method == "ddn"
    assert any("Search: ddn" in c.value for c in at.caption)
