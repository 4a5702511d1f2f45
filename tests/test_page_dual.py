"""pages/Dual_RS.py with Streamlit's AppTest, through the app's entrypoint: both stages live, the final radius,
Stop, the α split."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from oracles import digit_png
from streamlit.testing.v1 import AppTest

from rs_core.data import load_image, prepare_input
from rs_core.dual.estimator import load_dual
from rs_core.dual.smooth import DualStream
from rs_core.logs.certify_logs import common_images, read_certify_log
from rs_core.models.checkpoints import CHECKPOINTS_DIR
from rs_core.rounding import floor_str
from widgets import dual_measured

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGE = "pages/Dual_RS.py"  # relative to the entrypoint's folder
MNIST_EST = CHECKPOINTS_DIR / "mnist" / "dual" / "sigma_estimator.pth.tar"
pytestmark = pytest.mark.skipif(not MNIST_EST.exists(), reason=f"no shipped MNIST σ-estimator at {MNIST_EST}")


def _page(**settings) -> AppTest:
    """The app on the Dual RS page, with the sidebar's ``settings`` (by widget key) and the digit uploaded."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(PAGE).run()
    for key, value in settings.items():
        at.number_input(key=key).set_value(value)
    at.run()
    assert at.radio(key="source").value == "upload"
    at.file_uploader(key="upload").set_value([("one.png", digit_png(), "image/png")])
    return at.run()


def test_dual_certificate_matches_the_engine_and_explains_the_radius():
    at = _page(n_max=3000, batch=1000, seed=9)
    assert not at.exception and not at.error
    assert any("Why σ must be locally constant" in m.value for m in at.markdown)
    assert any("0.0005 (σ) + 0.0005 (class)" in c.value for c in at.caption)
    assert at.selectbox(key="dual_estimator").value == "mnist/dual"  # a registry id
    at.button(key="dual_start").click().run()
    run = at.session_state["dual_run"]
    assert run.job.wait(120)
    at.run()
    assert not at.exception
    cert = run.job.certificate
    est, experts = load_dual(MNIST_EST)
    # What the run was started with: the sidebar's settings, the estimator and its experts (by sha256).
    assert run.params == {"estimator": "mnist/dual", "alpha_split": 0.5, "alpha": 0.001, "n0": 100, "n_max": 3000,
                          "seed": 9}
    assert run.model["id"] == "mnist/dual" and run.model["sha256"] == est.sha256
    assert run.model["experts_sha256"] == {str(v): m.sha256 for v, m in experts.items()}
    assert run.extra["sigmas"] == sorted(experts)
    x = prepare_input(load_image(digit_png()), est.input_shape, invert=None, frame_digit=True)
    ref = DualStream(est.model, {s: m.model for s, m in experts.items()}, x, 1.0, n0=100, n_max=3000, alpha=0.001,
                     batch_size=1000, seed=9)
    for _ in ref:
        pass
    ref_cert = ref.certificate()
    np.testing.assert_array_equal(cert.stage1.counts, ref_cert.stage1.counts)
    assert (cert.prediction, cert.sigma, cert.radius) == (ref_cert.prediction, ref_cert.sigma, ref_cert.radius)
    assert cert.prediction == 1 and cert.radius == min(cert.radius_sigma, cert.radius_class)
    text = at.success[0].value
    assert f"**{floor_str(cert.radius)}** = min(R_σ = {floor_str(cert.radius_sigma)}, " \
           f"R_c = {floor_str(cert.radius_class)})" in text
    assert "Limited by" in text
    table = next(t.value for t in at.table if "stage 1: σ-estimator (σ_e)" in t.value.columns)
    assert table["stage 1: σ-estimator (σ_e)"].tolist()[6] == "0.0005" == table["stage 2: expert (σ_c)"].tolist()[6]
    # The run's seed, not a 20-digit derived stage seed (that one is in the JSON, with the certificate).
    assert table["stage 1: σ-estimator (σ_e)"].tolist()[8] == "stage 1 of seed 9"
    assert table["stage 2: expert (σ_c)"].tolist()[8] == "stage 2 of seed 9"
    assert len(at.get("download_button")) == 1


def test_stop_during_stage_one_abstains():
    at = _page(n_max=50_000_000, batch=200)
    at.button(key="dual_start").click().run()
    run = at.session_state["dual_run"]
    deadline = time.time() + 300  # a hang guard, not a speed check
    while (run.job.snapshot is None or run.job.snapshot.n < 400) and time.time() < deadline:
        time.sleep(0.05)
    at.run()
    assert not at.exception
    progress = [p.proto.text for p in at.get("progress")]
    assert any("σ-estimator (stage 1 of 2)" in t for t in progress), progress
    at.button(key="dual_run_stop").click().run()
    assert run.job.wait(30)
    at.run()
    cert = run.job.certificate
    assert cert.abstained and cert.limited_by == "not-run" and cert.stage1.stop_reason == "stopped"
    assert "sampling was stopped before stage 2 ran" in at.warning[0].value


def test_alpha_split_is_applied():
    at = _page(n_max=1000, batch=1000, alpha=0.01)
    at.number_input(key="dual_split").set_value(0.2).run()
    assert any("0.002 (σ) + 0.008 (class)" in c.value for c in at.caption)
    at.button(key="dual_start").click().run()
    run = at.session_state["dual_run"]
    assert run.job.wait(120)
    cert = run.job.certificate
    assert cert.stage1.alpha == pytest.approx(0.002) and cert.alpha_class == pytest.approx(0.008)


@pytest.mark.parametrize("split", [0.0, 1.0, 1.5])
def test_invalid_alpha_split_is_kept_named_and_blocks_start(split):
    """No min/max on the split: an invalid share stays in its box, an error names it and Start is disabled."""
    at = _page(n_max=1000, batch=1000)
    assert not at.button(key="dual_start").disabled
    at.number_input(key="dual_split").set_value(split).run()
    assert not at.exception
    assert at.number_input(key="dual_split").value == split
    message = f"Share of α for stage 1 must be strictly between 0 and 1, got {split:g}"
    assert [e.value for e in at.error] == [message]
    assert at.button(key="dual_start").disabled
    assert any(c.value == f"Start is disabled: {message}" for c in at.caption)
    assert not any("(σ) +" in c.value for c in at.caption)  # no α split is shown for it
    at.number_input(key="dual_split").set_value(0.5).run()
    assert not at.error and not at.button(key="dual_start").disabled


def test_invalid_sidebar_setting_blocks_start():
    at = _page(n_max=0)
    assert not at.exception and at.number_input(key="n_max").value == 0
    assert "n_max" in at.session_state["settings"].problems
    assert any(e.value.startswith("n max must be a whole number from 1") for e in at.sidebar.error)
    assert at.button(key="dual_start").disabled
    assert any(c.value.startswith("Start is disabled: Fix the sidebar first: n max") for c in at.caption)


def test_each_expert_alone_is_shown_next_to_the_dual_certificate_as_a_comparison():
    at = _page(n_max=2000, batch=1000, seed=4)
    at.button(key="dual_start").click().run()
    assert at.session_state["dual_run"].job.wait(120)
    at.run()
    at.button(key="dual_compare_start").click().run()
    other = at.session_state["dual_compare"]
    assert other.job.wait(120)
    at.run()
    assert not at.exception
    dual = at.session_state["dual_run"].job.certificate
    certs = other.job.certificate.certificates
    _, experts = load_dual(MNIST_EST)
    # Each expert at its own σ, with the dual run's total α, on the same input.
    assert [c.sigma for c in certs] == sorted(experts) and all(c.alpha == dual.alpha for c in certs)
    assert any("a comparison, not a certificate to pick from" in m.value for m in at.markdown)
    table = at.table[-1].value
    first_col = table.iloc[:, 0].tolist() if table.columns[0] == "" else list(table.index)
    assert first_col[-1].startswith("dual RS (one certificate")
    assert any(f"σ = {dual.sigma:g} alone ← σ_c of dual RS" in r for r in first_col) or dual.abstained
    assert list(table["radius"])[:3] == [floor_str(c.radius) for c in certs]
    said = " ".join(i.value for i in at.info) + " ".join(s.value for s in at.success)
    assert "not a certificate at 1 − α" in said or "at least the radius of every expert" in said


def test_stage_one_votes_stay_visible_after_the_run_next_to_the_result():
    """The live view ends on stage 2's votes; stage 1's — how σ_c was chosen — stay on the page beside them."""
    at = _page(n_max=1000, batch=1000, seed=3)
    at.button(key="dual_start").click().run()
    run = at.session_state["dual_run"]
    assert run.job.wait(120)
    at.run()
    assert not at.exception
    cert = run.job.certificate
    assert cert.stage2 is not None  # the digit is routed to an expert: both stages ran
    charts = {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    titles = [f["layout"]["title"]["text"] for f in charts.values()]
    stage1 = [f for f in charts.values() if f["layout"]["title"]["text"].startswith("stage 1 votes")]
    assert len(stage1) == 1, titles
    bars = stage1[0]["data"][0]
    assert bars["x"] == [f"σ = {v:g}" for v in cert.sigmas]
    assert bars["y"] == [int(v) for v in cert.stage1.counts] and sum(bars["y"]) == cert.stage1.n
    # … and stage 2's final votes are still there too.
    assert any("votes after n = 1,000 of 1,000" in t and "stage 2 of 2" in t for t in titles), titles
    assert any(m.value.startswith("**Stage 1: the σ-estimator** (σ_e = 1) → σ_c = ") for m in at.markdown)


def test_the_page_says_the_shipped_dual_rs_is_below_the_best_single_sigma_with_the_logs_numbers():
    at = _page()
    est, _ = load_dual(MNIST_EST)
    found = dual_measured.measured(MNIST_EST, est.meta)
    # Recomputed here from the shipped logs, independently of the page's text.
    dual = read_certify_log(MNIST_EST.parent / "certify_dual")
    singles = [read_certify_log(CHECKPOINTS_DIR / "mnist" / "mnist_cnn" / f"noise_{v}" / f"sigma_{v}")
               for v in ("0.25", "0.50", "1.00")]
    dual, *singles = common_images([dual, *singles])[0]
    radii = [0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
    gap = dual.certified_accuracy(radii) - np.max([s.certified_accuracy(radii) for s in singles], axis=0)
    assert [r["difference"] for r in found.rows] == pytest.approx(gap.tolist())
    info = " ".join(i.value for i in at.info)
    if (gap < 0).all():  # what the README and the model card measured
        assert "the shipped dual RS is below the best single σ at every radius" in info, info
        assert f"{abs(gap.max()) * 100:.1f} (r = {radii[int(gap.argmax())]:g}) to {abs(gap.min()) * 100:.1f} points" \
            in info, info
    assert f"{len(dual):,} mnist test images" in info and "README.md" in info
    table = at.table[0].value
    assert table["dual − best single"].tolist()[0].startswith(f"{gap[0]:+.3f} ± ")


def test_the_summary_never_says_below_everywhere_when_a_radius_is_level_or_above():
    rows = [{"radius": r, "first": 0.5, "best": "σ = 1", "best_accuracy": 0.5 - d, "difference": d, "se": 0.01}
            for r, d in ((0.0, -0.05), (0.5, 0.0), (1.0, 0.02))]
    text = dual_measured.summary(dual_measured.Measured(images=10, dataset="mnist", rows=rows))
    assert "below the best single σ at 1 of 3 radii and level with or above it at r = 0.5, 1." in text, text
    assert "every radius" not in text
