"""pages/Certified_accuracy.py with Streamlit's AppTest, through the app's entrypoint (app.py draws the sidebar)."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rs_core.data import data_dir, get_dataset
from rs_core.logs.certify_logs import format_certify_log, parse_certify_log
from rs_core.models.checkpoints import load_checkpoint
from rs_core.models.shipped import find_model
from rs_core.smoothing.certify import certify_examples

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGE = "pages/Certified_accuracy.py"  # relative to the entrypoint's folder
REF = ROOT.parent / "shared" / "reference" / "cohen2019" / "data" / "certify"
MNIST_025, MNIST_050 = "mnist/mnist_cnn/noise_0.25/sigma_0.25", "mnist/mnist_cnn/noise_0.50/sigma_0.50"  # log ids


def _page() -> AppTest:
    """The app, switched to the Certified accuracy page."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    return at.switch_page(PAGE).run()



def test_shipped_mnist_logs_show_the_model_card_numbers():
    at = _page()
    at.multiselect(key="acc_shipped").set_value([MNIST_050])
    at.text_input(key="acc_radii").set_value("0, 1.0, 1.5")
    at.run()
    assert not at.exception
    table = at.table[0].value
    assert table["r = 1"].tolist() == ["0.898"] and table["r = 1.5"].tolist() == ["0.672"]
    assert table["n images"].tolist() == [500]
    lower = at.table[1].value
    assert float(lower["r = 1"].iloc[0]) < 0.898
    assert len(at.get("plotly_chart")) == 1


@pytest.mark.skipif(not REF.exists(), reason=f"Cohen et al.'s reference logs not found at {REF}")
def test_uploaded_cohen_log_shows_the_published_numbers():
    at = _page()
    at.multiselect(key="acc_shipped").set_value([])
    data = (REF / "cifar10/resnet110/noise_0.25/test/sigma_0.25").read_bytes()
    at.file_uploader(key="acc_uploads").set_value([("sigma_0.25", data, "text/plain")])
    at.text_input(key="acc_radii").set_value("0.25, 0.5, 0.75")
    at.run()
    assert not at.exception
    table = at.table[0].value
    assert table["log"].tolist() == ["σ = 0.25 (sigma_0.25)"]
    shown = [table[c].iloc[0] for c in ["r = 0.25", "r = 0.5", "r = 0.75"]]
    assert shown == ["0.600", "0.428", "0.266"]
    assert [round(float(s), 2) for s in shown] == [0.60, 0.43, 0.27]  # Cohen et al.'s published (2 decimals)


@pytest.mark.parametrize("name, data, message", [
    ("picture.png", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "is not UTF-8 text"),
    ("notes.txt", b"hello\tworld\n", "is not a certify log"),
    ("bad_row", b"idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t1\tx\t1\t1.0\n", "line 2"),
])
def test_bad_uploads_show_a_message_and_keep_the_rest(name, data, message):
    at = _page()
    at.multiselect(key="acc_shipped").set_value([MNIST_025])
    at.selectbox(key="acc_upload_dataset").set_value("mnist")
    good = b"idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t1\t0.5\t1\t1.0\n1\t2\t-1\t0.0\t0\t1.0\n"
    at.file_uploader(key="acc_uploads").set_value([(name, data, "application/octet-stream"),
                                                   ("mine", good, "text/plain")])
    at.run()
    assert not at.exception
    assert any(message in e.value for e in at.error)
    assert at.table[0].value["log"].tolist() == ["mnist · mnist_cnn · σ = 0.25", "mine"]


def test_bad_radii_text_is_a_message_not_a_traceback():
    at = _page()
    at.text_input(key="acc_radii").set_value("0, one, 2")
    at.run()
    assert not at.exception and at.error[0].value.startswith("radii: give numbers >= 0, got 'one'")


needs_mnist = pytest.mark.skipif(not (data_dir() / "mnist" / "MNIST" / "raw").exists(),
                                 reason=f"no MNIST under RS_DATA_DIR={data_dir()}")


@needs_mnist
def test_live_certification_on_k_test_images():
    at = _page()
    at.multiselect(key="acc_shipped").set_value([])
    model_id = "mnist/mnist_cnn/noise_0.50"
    assert find_model(model_id).label in at.selectbox(key="model").options  # options are shown by their labels
    at.selectbox(key="model").set_value(model_id).run()  # the sidebar's model and settings
    assert at.selectbox(key="model").value == model_id and at.session_state["settings"].model_id == model_id
    at.number_input(key="n0").set_value(50)
    at.number_input(key="live_k").set_value(4)
    at.number_input(key="live_n").set_value(200)
    at.run()
    assert not at.exception and not at.error and not at.button(key="live_run").disabled
    at.button(key="live_run").click()
    at.run(timeout=120)
    assert not at.exception
    job = at.session_state["acc_job"].job  # a scheduler job: the page is drawn while it runs
    assert job.wait(timeout=120)
    at.run()  # the run after the job ended collects its log
    assert not at.exception
    assert [s.value for s in at.success] == ["Certified 4 test images: the curve is below."]
    table = at.table[0].value
    label = find_model(model_id).short_label  # the sidebar's label for results, e.g. "mnist · mnist_cnn · σ = 0.50"
    assert label.startswith("mnist · mnist_cnn · σ = 0.50")
    assert table["log"].tolist() == [f"{label} at σ = 0.5 · here, k = 4, N = 200"]
    assert table["n images"].tolist() == [4]
    assert len(at.get("download_button")) == 1
    # What the download serves is a Cohen-format log that parses back to the same rows.
    log = at.session_state["live_logs"][0]
    again = parse_certify_log(format_certify_log(log), "again")
    assert again.idx.tolist() == [0, 3333, 6666, 9999] and again.correct.tolist() == log.correct.tolist()
    # Each image is certified on its own with seed + its original index: a row re-runs alone to the same result.
    s = at.session_state["settings"]
    assert (s.sigma, s.n0, s.alpha, s.seed) == (0.5, 50, 0.001, 0)
    data, loaded = get_dataset("mnist", "test"), load_checkpoint(find_model(model_id).path)
    assert data.original_index(6666) == 6666
    alone = next(certify_examples(loaded.model, [(6666, *data[6666])], s.sigma, s.n0, 200, s.alpha, s.batch_size,
                                  seed=s.seed))
    j = 2  # the third row: test image 6666
    assert (log.idx[j], log.true_label[j], log.predict[j], log.radius[j], log.correct[j]) == alone[:5]


def test_invalid_compute_here_and_alpha_values_are_kept_and_named():
    """k, N, α and ρ have no min/max: an invalid value stays in its box, an error names it, Certify is disabled
    (k, N) or the plot and tables wait for a valid one (α, ρ)."""
    at = _page()
    at.multiselect(key="acc_shipped").set_value([MNIST_050])
    at.number_input(key="live_k").set_value(0)
    at.number_input(key="live_n").set_value(2_000_000)
    at.run()
    assert not at.exception
    assert at.number_input(key="live_k").value == 0 and at.number_input(key="live_n").value == 2_000_000
    errors = [e.value for e in at.error]
    assert any(e.startswith("k must be a whole number from 1 to 10,000, got 0") for e in errors), errors
    assert any(e.startswith("N must be a whole number from 1 to 1,000,000, got 2000000") for e in errors), errors
    assert at.button(key="live_run").disabled
    assert any("Certify is disabled" in c.value and "k must be" in c.value for c in at.caption)
    at.number_input(key="live_k").set_value(4)
    at.number_input(key="live_n").set_value(200).run()
    assert not at.error and not at.button(key="live_run").disabled
    assert len(at.table) == 3  # the shipped log's two tables and its attack log's (empirical robust accuracy)

    at.number_input(key="acc_rho").set_value(0.0).run()
    assert not at.exception and at.number_input(key="acc_rho").value == 0.0
    assert [e.value for e in at.error] == ["ρ must be > 0 and ≤ 0.5, got 0"]
    assert len(at.table) == 0 and len(at.get("plotly_chart")) == 0  # no bound at an invalid ρ
    at.number_input(key="acc_rho").set_value(0.001)
    at.number_input(key="acc_alpha").set_value(1.5).run()
    assert not at.exception and at.number_input(key="acc_alpha").value == 1.5
    assert [e.value for e in at.error] == ["α must be > 0 and ≤ 0.5, got 1.5"]
    assert len(at.table) == 0
    at.number_input(key="acc_alpha").set_value(0.001).run()
    assert not at.error and len(at.table) == 3 and not at.button(key="live_run").disabled
    # An invalid sidebar setting (σ = 0) is kept and named in the sidebar, and Certify waits for it.
    at.number_input(key="sigma").set_value(0.0).run()
    assert not at.exception and at.number_input(key="sigma").value == 0.0
    assert "sigma" in at.session_state["settings"].problems
    assert any(e.value.startswith("σ must be > 0") for e in at.sidebar.error)
    assert at.button(key="live_run").disabled
    assert any("Certify is disabled" in c.value and "σ must be > 0" in c.value for c in at.caption)


def test_curves_are_cut_to_common_images_only_when_asked_and_then_the_heading_says_so():
    """Before: the default selection cut every curve to the images common to all logs (51) without a word. Now each
    curve uses all of its rows unless the box is ticked, and then the heading names how many images are used."""
    at = _page()
    at.multiselect(key="acc_shipped").set_value([MNIST_025])
    mine = b"idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t7\t7\t0.5\t1\t1.0\n20\t9\t-1\t0.0\t0\t1.0\n3\t1\t1\t2\t1\t1\n"
    at.selectbox(key="acc_upload_dataset").set_value("mnist")
    at.file_uploader(key="acc_uploads").set_value([("mine", mine, "text/plain")])
    at.run()
    assert not at.exception
    assert not at.checkbox(key="acc_common").value
    assert at.table[0].value["n images"].tolist() == [500, 3]
    assert any("cover different images (500, 3)" in c.value and "compare them on the 2 images common to all"
               in c.value for c in at.caption)
    assert not any("common to all" in m.value for m in at.markdown)  # no heading claims a cut
    at.checkbox(key="acc_common").check().run()
    assert at.table[0].value["n images"].tolist() == [2, 2]
    headings = [m.value for m in at.markdown if m.value.startswith("#### Certified accuracy against radius")]
    assert headings == ["#### Certified accuracy against radius — on the 2 images common to all 2 logs"]
    assert any(m.value.startswith("**Certified accuracy** (one row per log; on the 2 images common to all 2 logs)")
               for m in at.markdown)


@pytest.mark.skipif(not REF.exists(), reason=f"Cohen et al.'s reference logs not found at {REF}")
@pytest.mark.parametrize("stated", ["not stated", "cifar10"])
def test_logs_of_different_data_sets_are_never_intersected(stated):
    """Before: Cohen's 500-row CIFAR-10 log was cut to the indices it shared with the preselected shipped logs
    (σ = 0.25 showed 0.843 / 0.667 instead of 0.748 / 0.600). Now the shipped logs stay listed and selected,
    the page says the data sets differ, and shows the upload's data set alone: the published numbers."""
    at = _page()
    shipped = at.multiselect(key="acc_shipped").value
    assert shipped  # the default selection is kept
    at.selectbox(key="acc_upload_dataset").set_value(stated)
    data = (REF / "cifar10/resnet110/noise_0.25/test/sigma_0.25").read_bytes()
    at.file_uploader(key="acc_uploads").set_value([("sigma_0.25", data, "text/plain")])
    at.text_input(key="acc_radii").set_value("0, 0.25")
    at.run()
    assert not at.exception
    assert at.multiselect(key="acc_shipped").value == shipped
    assert any("different data sets" in w.value for w in at.warning)
    table = at.table[0].value
    assert table["log"].tolist() == ["σ = 0.25 (sigma_0.25)"] and table["n images"].tolist() == [500]
    assert table["r = 0"].tolist() == ["0.748"] and table["r = 0.25"].tolist() == ["0.600"]
    assert not any("images are common" in c.value for c in at.caption)
    other = [o for o in at.radio(key="acc_group").options if o != stated]
    assert len(other) == 1
    at.radio(key="acc_group").set_value(other[0]).run()  # the shipped logs, on their own
    assert set(at.table[0].value["data set"]) == set(other) and len(at.table[0].value) == len(shipped)


def test_the_lower_bound_uses_each_logs_own_alpha():
    at = _page()
    at.multiselect(key="acc_shipped").set_value([MNIST_050])
    good = b"idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t7\t7\t0.5\t1\t1.0\n20\t9\t9\t0.7\t1\t1.0\n"
    at.selectbox(key="acc_upload_dataset").set_value("mnist")
    at.file_uploader(key="acc_uploads").set_value([("mine", good, "text/plain")])
    at.run()
    before = at.table[1].value
    assert before["α"].tolist() == ["0.001", "0.001 (box)"]
    at.number_input(key="acc_alpha").set_value(0.1).run()
    after = at.table[1].value
    assert after["α"].tolist() == ["0.001", "0.1 (box)"]
    assert after.iloc[0].tolist() == before.iloc[0].tolist()  # the shipped log keeps its own α
    assert after.iloc[1].tolist() != before.iloc[1].tolist()


def test_same_named_logs_are_shown_side_by_side_not_a_traceback():
    """Four uploads named sigma_0.25 (Cohen et al.'s naming in every folder; one of them the same file twice): four
    rows and four curves with distinct labels, each with its own numbers."""
    rows = ["idx\tlabel\tpredict\tradius\tcorrect\ttime"]
    logs = []
    for k in range(4):
        body = [f"{i}\t{i % 10}\t{i % 10}\t{0.1 * (i % (3 + k)):.3f}\t1\t0:00:01" for i in range(20)]
        logs.append("\n".join(rows + body).encode())
    logs[3] = logs[2]  # one file uploaded twice
    at = _page()
    at.multiselect(key="acc_shipped").set_value([])
    at.file_uploader(key="acc_uploads").set_value([("sigma_0.25", data, "text/plain") for data in logs]).run()
    assert not at.exception, at.exception
    at.text_input(key="acc_radii").set_value("0, 0.2").run()
    assert not at.exception, at.exception
    table = at.table[0].value
    assert table["log"].tolist() == ["σ = 0.25 (sigma_0.25)", "σ = 0.25 (sigma_0.25) #2",
                                     "σ = 0.25 (sigma_0.25) #3", "σ = 0.25 (sigma_0.25) #4"]
    assert table["r = 0.2"].tolist()[2] == table["r = 0.2"].tolist()[3] != table["r = 0.2"].tolist()[0]
    assert len(at.table[1].value) == 4 and len(at.get("plotly_chart")) == 1


# One model per σ: where several share a σ, the one checkpoints/index.json marks "default" (issue 28).
MNIST_FAMILY = ["mnist/mnist_cnn/noise_0.25/sigma_0.25", "mnist/mnist_cnn/smoothadv_0.50/sigma_0.50",
                "mnist/mnist_cnn/consistency20_1.00/sigma_1.00"]


def test_the_page_opens_on_the_sidebars_model_and_cuts_nothing():
    """Before: the page opened on partial CIFAR-10 logs (cut to 51 common images) while the sidebar's model was
    MNIST's. Now it preselects the sidebar model's σ family, all certified on the same 500 images."""
    at = _page()
    assert at.session_state["settings"].model_id == "mnist/mnist_cnn/smoothadv_0.50"
    assert at.multiselect(key="acc_shipped").value == MNIST_FAMILY
    table = at.table[0].value
    assert table["log"].tolist() == ["mnist · mnist_cnn · σ = 0.25",  # the only model at its σ: no recipe needed
                                     "mnist · mnist_cnn · σ = 0.50 · SmoothAdv ε = 1, m = 2, 2 steps, 40 epochs",
                                     "mnist · mnist_cnn · σ = 1.00 · consistency λ = 20, 60 epochs"]
    assert table.columns.tolist()[:3] == ["log", "data set", "n images"]  # one row per log, radii across
    assert table["n images"].tolist() == [500, 500, 500]
    assert any(m.value == "#### Certified accuracy against radius — all 3 logs on the same 500 images"
               for m in at.markdown)
    assert not at.warning and not at.get("radio")  # one data set: nothing to choose


def test_a_model_the_index_does_not_mark_stands_for_its_own_sigma_in_the_family():
    """Issue 28: with the older consistency-trained σ = 0.5 model in the sidebar, the σ family is its own curve with the
    marked models of the other σ's, never the marked σ = 0.5 model beside it (two curves at one σ)."""
    at = _page()
    at.selectbox(key="model").set_value("mnist/mnist_cnn/noise_0.50").run()
    assert not at.exception
    assert at.multiselect(key="acc_shipped").value == [MNIST_025, MNIST_050, "mnist/mnist_cnn/consistency20_1.00/sigma_1.00"]


def test_the_selection_follows_the_sidebar_until_the_user_chooses():
    at = _page()
    at.selectbox(key="model").set_value("cifar10-partial/cifar_resnet20/noise_0.25").run()
    assert not at.exception
    assert at.multiselect(key="acc_shipped").value == [
        f"cifar10-partial/cifar_resnet20/noise_{s}/sigma_{s}" for s in ("0.12", "0.25", "0.50", "1.00")]
    assert set(at.table[0].value["data set"]) == {"cifar10-partial"}
    at.selectbox(key="model").set_value("mnist/mnist_cnn/clean").run()  # a clean model: its own logs
    assert at.multiselect(key="acc_shipped").value == [f"mnist/mnist_cnn/clean/sigma_{s}"
                                                       for s in ("0.25", "0.50", "1.00")]
    # The user's own choice is kept when the sidebar moves on, and across pages.
    at.multiselect(key="acc_shipped").set_value([MNIST_025, "cifar10-partial/cifar_cnn/noise_0.50/sigma_0.50"]).run()
    at.selectbox(key="model").set_value("mnist/mnist_cnn/noise_1.00").run()
    assert at.multiselect(key="acc_shipped").value == [MNIST_025, "cifar10-partial/cifar_cnn/noise_0.50/sigma_0.50"]
    assert at.radio(key="acc_group").value == "mnist"  # the sidebar's data set is shown
    at.selectbox(key="model").set_value("cifar10-partial/cifar_cnn/noise_0.25").run()
    assert at.radio(key="acc_group").value == "cifar10-partial"  # … and followed when it changes
    at.switch_page("pages/Bounds.py").run()
    at.switch_page(PAGE).run()
    assert at.multiselect(key="acc_shipped").value == [MNIST_025, "cifar10-partial/cifar_cnn/noise_0.50/sigma_0.50"]


def _legend(at) -> list[str]:
    import json

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return [t["name"] for t in spec["data"] if t.get("showlegend", True)]


def test_uploaded_logs_are_named_once_in_legends_and_tables():
    """Before: "mylog.tsv (mylog.tsv)". Now one label per curve: the file's name, or Cohen et al.'s sigma_<σ> read."""
    body = b"idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t7\t7\t0.5\t1\t1.0\n"
    at = _page()
    at.multiselect(key="acc_shipped").set_value([])
    at.file_uploader(key="acc_uploads").set_value([("mylog.tsv", body, "text/plain"),
                                                   ("sigma_0.50", body, "text/plain")]).run()
    assert not at.exception
    assert at.table[0].value["log"].tolist() == ["mylog.tsv", "σ = 0.50 (sigma_0.50)"]
    assert _legend(at) == ["mylog.tsv (n = 1)", "σ = 0.50 (sigma_0.50) (n = 1)"]


@needs_mnist
def test_a_curve_computed_here_is_shown_at_once_whatever_data_set_was_shown():
    at = _page()
    cifar = "cifar10-partial/cifar_cnn/noise_0.50/sigma_0.50"
    at.multiselect(key="acc_shipped").set_value([MNIST_050, cifar]).run()
    at.radio(key="acc_group").set_value("cifar10-partial").run()
    assert at.table[0].value["log"].tolist() == ["cifar10-partial · cifar_cnn · σ = 0.50"]
    at.number_input(key="live_k").set_value(2)
    at.number_input(key="live_n").set_value(100)
    at.button(key="live_run").click().run()
    assert not at.exception
    assert at.radio(key="acc_group").value == "cifar10-partial"  # while it runs, the page stays as it was
    assert at.session_state["acc_job"].job.wait(timeout=60)
    at.run()
    assert not at.exception
    assert at.radio(key="acc_group").value == "mnist"
    assert at.table[0].value["log"].tolist()[0].endswith("· here, k = 2, N = 100")


@needs_mnist
def test_compute_here_runs_as_a_job_whose_stop_is_prompt_and_keeps_what_was_done():
    """Before: "compute here" blocked the page (greyed out) with no Stop. Now it is a scheduler job: the page is
    drawn while it runs (its tables, a progress bar, Stop), Stop ends it within about a batch, and the images
    finished before are kept as a log."""
    import time

    at = _page()
    at.number_input(key="live_k").set_value(50)
    at.number_input(key="live_n").set_value(20_000)
    at.button(key="live_run").click().run()
    assert not at.exception
    job = at.session_state["acc_job"].job
    assert not job.done and not at.button(key="acc_stop").disabled
    assert at.button(key="live_run").disabled  # one run at a time
    assert len(at.table) == 3  # the shipped logs' curves and tables (and their attack's) are drawn while it runs
    assert any("of 50 test images" in p.proto.text for p in at.get("progress"))
    deadline = time.monotonic() + 60
    while (job.snapshot is None or job.snapshot.images_done < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    at.button(key="acc_stop").click()
    t0 = time.monotonic()
    at.run()
    assert job.wait(timeout=10) and time.monotonic() - t0 < 10  # within about one batch
    at.run()
    assert not at.exception and "acc_job" not in at.session_state
    done = len(at.session_state["live_logs"][0])
    assert 2 <= done < 50
    assert [w.value for w in at.warning] == [f"Stopped after {done} of 50 test images: their curve is below."]
    assert at.table[0].value["log"].tolist()[0].endswith(f"· here, k = {done} of 50, N = 20000")
    assert not at.button(key="live_run").disabled


def test_compute_here_without_the_data_set_names_no_server_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("RS_DATA_DIR", str(tmp_path / "nowhere"))
    at = _page()
    at.button(key="live_run").click().run()
    assert not at.exception and "acc_job" not in at.session_state
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("The mnist test images are not on this server")
    assert str(tmp_path) not in errors[0]
    assert len(at.table) == 3  # the rest of the page is still there


def test_an_uploaded_attack_log_draws_a_dashed_empirical_curve_and_its_table():
    import json

    at = _page()
    at.multiselect(key="acc_shipped").set_value([MNIST_050]).run()
    # The shipped attack log beside the σ = 0.5 log is shown with it (dashed, in its colour), until unticked.
    traces = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert [t["name"] for t in traces if t.get("line", {}).get("dash") == "dash"] == \
        ["attack σ = 0.50: empirical (n = 500)"]
    at.checkbox(key="acc_show_attacks").uncheck()
    attack = (b"idx\tlabel\tpredict\tadv_distance\tadv_predict\ttime\n0\t7\t7\t0.75\t3\t1.0\n20\t9\t9\tinf\tnone\t1.0\n"
              b"40\t1\t1\t1.2\t7\t1.0\n")
    at.file_uploader(key="acc_attack_uploads").set_value([("my_attack", attack, "text/plain")])
    at.text_input(key="acc_radii").set_value("0, 1.0")
    at.run()
    assert not at.exception
    traces = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    dashed = [t for t in traces if t.get("line", {}).get("dash") == "dash"]
    assert [t["name"] for t in dashed] == ["my_attack (attack): empirical (n = 3)"]
    table = at.table[2].value
    assert table["attack log"].tolist() == ["my_attack (attack)"]
    assert table["r = 0"].tolist() == ["1.000"] and table["r = 1"].tolist() == ["0.667"]
    bad = b"idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t1\t0.5\t1\t1.0\n"
    at.file_uploader(key="acc_attack_uploads").set_value([("sigma_0.50", bad, "text/plain")])
    at.run()
    assert not at.exception and any("is not an attack log" in e.value for e in at.error)


def test_logs_of_different_norms_are_never_on_one_axis_and_the_axis_says_the_norm():
    """Issue 30: the Gaussian ℓ2, Gaussian ℓ1 and Laplace ℓ1 logs of σ = 0.5 chosen together: a warning and one
    norm at a time; the x-axis and the table columns name it; an attack log's ℓ2 distances are not drawn over ℓ1
    radii."""
    import json

    at = _page()
    l1 = ["mnist/mnist_cnn/noise_0.50/sigma_0.50_l1", "mnist/mnist_cnn/laplace_0.50/sigma_0.50"]
    at.multiselect(key="acc_shipped").set_value([MNIST_050, *l1])
    at.text_input(key="acc_radii").set_value("0, 1.0")
    at.run()
    assert not at.exception and any("different norms" in w.value for w in at.warning)

    def shown():
        spec = json.loads(at.get("plotly_chart")[0].proto.spec)
        curves = [t["name"] for t in spec["data"] if t.get("showlegend", True) is not False]
        return spec["layout"]["xaxis"]["title"]["text"], curves, list(at.table[0].value.columns)

    title, curves, columns = shown()
    assert title == "radius (ℓ2)" and len(curves) == 2 and "r = 1" in columns  # the ℓ2 log and its attack curve
    at.radio(key="acc_norm").set_value("l1").run()
    title, curves, columns = shown()
    assert not at.exception and title == "radius (ℓ1)" and "ℓ1 r = 1" in columns and len(curves) == 2
    assert not any("empirical" in c for c in curves)
    attack = b"idx\tlabel\tpredict\tadv_distance\tadv_predict\ttime\n0\t7\t7\t0.75\t3\t1.0\n"
    at.file_uploader(key="acc_attack_uploads").set_value([("my_attack", attack, "text/plain")]).run()
    assert not at.exception and not any("empirical" in c for c in shown()[1])
    assert any("ℓ2 distances on the Gaussian-smoothed classifier" in w.value for w in at.warning)
