import json
from pathlib import Path

import numpy as np
import pytest

from rs_core.logs.certify_logs import (
    CertifyLog,
    accuracy_lower_bound,
    default_label,
    latex_table,
    markdown_table,
    parse_duration,
    radius_grid,
    read_certify_log,
)
from rs_core.models.checkpoints import CHECKPOINTS_DIR

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "cohen2019"
needs_ref = pytest.mark.skipif(not REF.exists(), reason=f"Cohen et al.'s reference logs not found at {REF}")

TABLES = {
    "vary_noise_cifar10": ("cifar10/resnet110", ["0.12", "0.25", "0.50", "1.00"], (0.25, 1.5, 0.25)),
    "vary_noise_imagenet": ("imagenet/resnet50", ["0.25", "0.50", "1.00"], (0.5, 3.0, 0.5)),
}


@needs_ref
@pytest.mark.parametrize("name", TABLES)
@pytest.mark.parametrize("fmt, writer", [("markdown", markdown_table), ("latex", latex_table)])
def test_reproduces_cohen_tables_byte_for_byte(name, fmt, writer):
    model, sigmas, grid = TABLES[name]
    logs = [read_certify_log(REF / "data" / "certify" / model / f"noise_{s}" / "test" / f"sigma_{s}") for s in sigmas]
    # 500 rows each, except the released ImageNet σ = 0.25 log (427 rows), which the published table also used.
    assert [len(log) for log in logs] == ([427, 500, 500] if "imagenet" in name else [500] * 4)
    expected = (REF / "analysis" / fmt / name).read_text()
    assert writer(logs, radius_grid(*grid)) == expected


@needs_ref
def test_published_cifar_numbers():
    log = read_certify_log(REF / "data/certify/cifar10/resnet110/noise_0.25/test/sigma_0.25")
    np.testing.assert_allclose(np.round(log.certified_accuracy([0.25, 0.5, 0.75]), 2), [0.60, 0.43, 0.27])
    assert log.seconds[0] == pytest.approx(15.4)


def test_parse_duration_both_formats():
    assert parse_duration("15.4") == 15.4
    assert parse_duration("0:02:31.238689") == pytest.approx(151.238689)
    assert parse_duration("1 day, 0:00:01") == 86401


def test_certified_accuracy_counts_abstentions_in_the_denominator(tmp_path):
    p = tmp_path / "sigma_0.50"
    p.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t1\t0.8\t1\t1.0\n1\t2\t-1\t0.0\t0\t1.0\n"
                 "2\t3\t3\t0.3\t1\t1.0\n3\t4\t5\t2.0\t0\t1.0\n")
    log = read_certify_log(p)
    assert log.label == "σ = 0.50" == default_label(p)
    np.testing.assert_allclose(log.certified_accuracy([0.0, 0.3, 0.5, 1.0]), [0.5, 0.5, 0.25, 0.0])


def test_bad_logs_name_file_and_line(tmp_path):
    (tmp_path / "a").write_text("idx\tlabel\tpredict\tcorrect\ttime\n")
    with pytest.raises(ValueError, match="^log: a is not a certify log"):
        read_certify_log(tmp_path / "a")
    (tmp_path / "b").write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t1\tabc\t1\t1.0\n")
    with pytest.raises(ValueError, match="^log: b line 2"):
        read_certify_log(tmp_path / "b")


def test_lower_bound_formula_and_monotonicity():
    acc = np.array([0.0, 0.3, 0.6, 0.9])
    m, alpha, rho = 500, 0.001, 0.001
    slack = alpha + np.sqrt(2 * alpha * (1 - alpha) * np.log(1 / rho) / m) + np.log(1 / rho) / (3 * m)
    np.testing.assert_allclose(accuracy_lower_bound(acc, m, alpha, rho), np.maximum(acc - slack, 0))
    assert accuracy_lower_bound(0.6, 10_000, alpha, rho) > accuracy_lower_bound(0.6, 500, alpha, rho)
    with pytest.raises(ValueError, match="^rho:"):
        accuracy_lower_bound(0.5, 10, 0.001, 0.0)


def test_lower_bound_holds_in_simulation():
    """m examples whose truth is 0 but CERTIFY errs with probability α: the bound must cover a = 0."""
    rng = np.random.default_rng(0)
    m, alpha, rho, trials = 200, 0.05, 0.05, 4000
    a_hat = rng.binomial(m, alpha, size=trials) / m
    violations = np.mean(accuracy_lower_bound(a_hat, m, alpha, rho) > 0.0)
    assert violations <= rho


def test_empty_log_table(tmp_path):
    log = CertifyLog("x", *(np.zeros(0) for _ in range(6)))
    assert "0.00" in markdown_table([log], [0.0])


def test_restrict_keeps_the_rows_of_the_given_examples():
    from rs_core.logs.certify_logs import CertifyLog

    log = CertifyLog.from_rows("x", [(0, 1, 1, 0.5, 1, 1.0), (20, 2, 2, 0.7, 1, 1.0), (40, 3, -1, 0.0, 0, 1.0)])
    sub = log.restrict([20, 40, 60])
    assert sub.idx.tolist() == [20, 40] and sub.certified_accuracy([0.0]).tolist() == [0.5]


def test_logs_of_different_data_sets_are_not_intersected():
    from rs_core.logs.certify_logs import common_images

    a = CertifyLog.from_rows("a", [(0, 1, 1, 0.5, 1, 0.1), (1, 2, 2, 0.5, 1, 0.1)], dataset="cifar10")
    b = CertifyLog.from_rows("b", [(1, 2, 2, 0.2, 1, 0.1)], dataset="cifar10-partial")
    c = CertifyLog.from_rows("c", [(1, 2, -1, 0.0, 0, 0.1)], dataset="cifar10", alpha=0.01)
    with pytest.raises(ValueError, match=r"^logs: they index different data sets \(cifar10: 1 log\(s\), "
                                         r"cifar10-partial: 1 log\(s\)\)"):
        common_images([a, b])
    with pytest.raises(ValueError, match=r"\(not stated: 1 log\(s\), cifar10: 1 log\(s\)\)"):
        common_images([a, CertifyLog.from_rows("d", [(1, 2, 2, 0.2, 1, 0.1)])])
    (ra, rc), common = common_images([a, c])
    assert common == {1} and ra.idx.tolist() == [1] and (rc.dataset, rc.alpha) == ("cifar10", 0.01)


def test_read_log_takes_its_data_set_from_its_folders(tmp_path):
    folder = tmp_path / "certify" / "cifar10" / "resnet110"
    folder.mkdir(parents=True)
    (folder / "sigma_0.25").write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t3\t3\t0.1\t1\t1.0\n")
    assert read_certify_log(folder / "sigma_0.25").dataset == "cifar10"
    assert read_certify_log(folder / "sigma_0.25", dataset="mnist").dataset == "mnist"


def test_the_dual_rs_comparison_in_the_model_cards_is_recomputed_from_the_shipped_logs():
    """checkpoints/README.md's "dual − best single" rows are what analyze --common --versus prints from the shipped
    logs (dual RS against each single σ on their common images), with the per-image oracle as the ceiling."""
    import re
    import subprocess
    import sys

    readme = (CHECKPOINTS_DIR / "README.md").read_text()
    for ds, arch in [("mnist", "mnist_cnn"), ("cifar10-partial", "cifar_cnn")]:
        singles = sorted(str(p) for p in (CHECKPOINTS_DIR / ds / arch).glob("noise_*/sigma_*")
                         if p.name in ("sigma_0.25", "sigma_0.50", "sigma_1.00"))
        proc = subprocess.run([sys.executable, "-m", "rs_core", "analyze", str(CHECKPOINTS_DIR / ds / "dual/certify_dual"),
                               *singles, "--common", "--versus", "--oracle"], capture_output=True, text=True,
                              timeout=300, check=True)
        row = next(line for line in proc.stdout.splitlines() if "− best |" in line)
        printed = [float(v.split("±")[0]) for v in row.split("|")[2:-1]]
        section = readme[readme.index("MNIST, 500 test images" if ds == "mnist" else "Partial CIFAR-10 (`cifar_cnn` experts"):]
        card = re.search(r"\| dual − best single \|([^\n]*)", section).group(1)
        assert printed == pytest.approx([float(v) for v in card.split("|")[:-1]], abs=1e-9), (ds, printed, card)
        assert "per-image oracle (not a certificate)" in proc.stdout


def _card_log_rows(text: str):
    """Every row of a markdown table in ``text`` whose first cell names a shipped log (`` `<path below
    checkpoints/>` ``), with the radii of its table's ``r = …`` columns: (path, {radius: printed cell})."""
    import re

    header: list[str] = []
    for line in text.splitlines():
        if not line.startswith("|"):
            header = []
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = cells
            continue
        path = re.match(r"`([^`]+)`", cells[0])  # a log path first, perhaps words after it
        if path is None or not (CHECKPOINTS_DIR / path.group(1)).is_file():
            continue
        radii = {float(h.removeprefix("r = ")): c for h, c in zip(header, cells, strict=True) if h.startswith("r = ")}
        if radii:  # a table of certified accuracies (not, say, the estimators' table, which names checkpoints)
            yield path.group(1), radii


@pytest.mark.parametrize("doc", [CHECKPOINTS_DIR / "README.md", CHECKPOINTS_DIR.parent / "README.md"],
                         ids=["model card", "README"])
def test_the_certified_training_tables_are_recomputed_from_the_shipped_logs(doc):
    """Issue 28: each row of the model card or the README that names a shipped log (the 500-image logs and the
    full-test-set adaptive ones) prints that log's certified accuracy at its columns' radii, to 3 decimals; "—" marks
    a radius an adaptive run did not list (so did not examine), and such a radius never shows a number."""
    rows = list(_card_log_rows(doc.read_text()))
    paths = {p for p, _ in rows}
    assert {p for p in paths if "/full_test/" in p} >= {"mnist/mnist_cnn/smoothadv_0.50/full_test/radii_0.50"}
    if doc.parent == CHECKPOINTS_DIR:
        assert {"mnist/mnist_cnn/smoothadv_0.50/sigma_0.50", "mnist/mnist_cnn/noise_0.50/sigma_0.50"} <= paths
    for path, cells in rows:
        log = read_certify_log(CHECKPOINTS_DIR / path)
        meta = json.loads((CHECKPOINTS_DIR / f"{path}.meta.json").read_text())
        for r, printed in cells.items():
            listed = meta.get("radii")  # an adaptive log certifies only its listed radii (and the class, r = 0)
            if printed == "—":
                assert listed and r not in listed and r > 0, (path, r)
                continue
            assert not listed or r in listed or r == 0, (path, r)
            assert printed == f"{log.certified_accuracy([r])[0]:.3f}", (path, r, printed)
