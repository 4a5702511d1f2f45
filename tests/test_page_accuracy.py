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
    assert table["r = 1"].tolist() == ["0.900"] and table["r = 1.5"].tolist() == ["0.672"]
    assert table["n images"].tolist() == [500]
    lower = at.table[1].value
    assert float(lower["r = 1"].iloc[0]) < 0.900
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
    assert at.table[0].value["log"].tolist() == ["mnist · mnist_cnn · σ = 0.25", "mine (mine)"]


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
    assert len(at.table) == 2  # the shipped log's tables

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
    assert not at.error and len(at.table) == 2 and not at.button(key="live_run").disabled
    # An invalid sidebar setting (σ = 0) is kept and named in the sidebar, and Certify waits for it.
    at.number_input(key="sigma").set_value(0.0).run()
    assert not at.exception and at.number_input(key="sigma").value == 0.0
    assert "sigma" in at.session_state["settings"].problems
    assert any(e.value.startswith("σ must be > 0") for e in at.sidebar.error)
    assert at.button(key="live_run").disabled
    assert any("Certify is disabled" in c.value and "σ must be > 0" in c.value for c in at.caption)


def test_logs_are_compared_on_their_common_images():
    at = _page()
    at.multiselect(key="acc_shipped").set_value([MNIST_025])
    mine = b"idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t7\t7\t0.5\t1\t1.0\n20\t9\t-1\t0.0\t0\t1.0\n3\t1\t1\t2\t1\t1\n"
    at.selectbox(key="acc_upload_dataset").set_value("mnist")
    at.file_uploader(key="acc_uploads").set_value([("mine", mine, "text/plain")])
    at.run()
    assert not at.exception
    assert at.table[0].value["n images"].tolist() == [2, 2]
    assert any("2 images are common to all 2 logs" in c.value for c in at.caption)
    at.checkbox(key="acc_common").uncheck().run()
    assert at.table[0].value["n images"].tolist() == [500, 3]


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
    at.checkbox(key="acc_common").uncheck()
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
