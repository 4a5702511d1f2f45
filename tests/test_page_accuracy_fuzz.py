"""The Certified accuracy page's inputs, fuzzed: uploaded log names, sizes and contents.

Property: whatever files are uploaded, the page's processing (``read_uploads`` → ``distinct_labels`` → the tables
and the figure, with and without cutting to the common images) raises nothing; every file is either a curve or one
readable message naming it. Then a few of the nastiest cases through the page itself (AppTest): no exception
element, and an st.error / st.warning where a file is bad.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from rs_core.logs.certify_logs import (
    MAX_LABEL,
    CertifyLog,
    accuracy_tables,
    common_images,
    figure,
    format_certify_log,
    read_uploads,
)

ROOT = Path(__file__).resolve().parents[1]
HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"


@st.composite
def valid_log(draw, max_rows: int = 40) -> bytes:
    """A Cohen-format log: 0 rows (header only), one row, or many."""
    n = draw(st.sampled_from([0, 1, draw(st.integers(2, max_rows))]))
    idx = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n, unique=True))
    rows = []
    for i in idx:
        label = draw(st.integers(0, 9))
        predict = draw(st.sampled_from([-1, label, (label + 1) % 10]))
        radius = 0.0 if predict == -1 else draw(st.floats(0, 1e6, allow_nan=False))
        rows.append((i, label, predict, radius, int(predict == label), draw(st.floats(0, 1e4))))
    text = format_certify_log(CertifyLog.from_rows("x", rows))
    # Cohen et al.'s own logs write time as H:MM:SS.ffffff and radii with {:.3}; both must load.
    if draw(st.booleans()):
        text = text.replace("\t0.000\n", "\t0:00:01.500000\n")
    return text.encode()


def _bad_row(cells: list[str]) -> bytes:
    return (HEADER + "0\t1\t1\t0.5\t1\t0.1\n" + "\t".join(cells) + "\n").encode()


BAD_CONTENTS = [
    b"",  # an empty file
    HEADER.encode(),  # header only
    HEADER.replace("\t", ",").encode(),  # comma-separated
    b"idx\tlabel\tpredict\tradius\tcorrect\n0\t1\t1\t0.5\t1\n",  # Cohen's predict-log columns, no radius
    b"idx\tlabel\tpredict\tradius\tcorrect\ttime\textra\n",  # a column too many
    _bad_row(["1", "1", "1", "nan", "1", "0.1"]),
    _bad_row(["1", "1", "1", "inf", "1", "0.1"]),
    _bad_row(["1", "1", "1", "-0.5", "1", "0.1"]),
    _bad_row(["0", "1", "1", "0.5", "1", "0.1"]),  # idx 0 twice
    _bad_row(["1", "1", "1", "1e999", "1", "0.1"]),
    _bad_row(["1", "1", "-1", "0.7", "0", "0.1"]),  # an abstention with a radius
    _bad_row(["1", "1", "2", "0.5", "1", "0.1"]),  # correct but predict ≠ label
    _bad_row(["1", "1", "1", "0.5", "1"]),  # five fields
    b"\xff\xfe\x00i\x00d\x00x",  # UTF-16: not UTF-8
    (HEADER + "0\t1\t1\t0.5\t1\t0.1\x00\n").encode(),  # a NUL byte
    "idx\tlabel\tpredict\tradius\tcorrect\ttime\n١\t1\t1\t0.5\t1\t0.1\n".encode(),  # Arabic-Indic digit
]

names = st.one_of(
    st.sampled_from(["sigma_0.25", "sigma_0.25", "mylog.tsv", "", " ", ".", "..", "a/b/sigma_0.50", "x #2",
                     "σ = 0.25 (sigma_0.25)", "<b>bold</b>", "**md** $x$", "名前.tsv", "emoji 🙂"]),
    st.text(max_size=30),
    st.text(min_size=200, max_size=400),  # very long
)
contents = st.one_of(valid_log(), st.sampled_from(BAD_CONTENTS), st.binary(max_size=300),
                     st.text(max_size=300).map(lambda t: (HEADER + t).encode("utf-8", "surrogatepass")))


def _process(files: list[tuple[str, bytes]]) -> tuple[list[CertifyLog], list]:
    """What the page does with uploads, up to the figure and the tables (both with and without the cut)."""
    logs, problems = read_uploads(files, None)
    radii = np.array([0.0, 0.5, 1e6])
    for shown in (logs, common_images(logs)[0] if logs else []):
        if shown:
            first, lower = accuracy_tables(shown, radii, 0.001, 0.001)
            assert first["log"] == lower["log"] == [log.label for log in shown]
            figure(shown, 0.001, 0.001)
    return logs, problems


@given(st.lists(st.tuples(names, contents), min_size=1, max_size=5))
@example([("sigma_0.25", b"")] * 2)
@example([("x", HEADER.encode() + b"0\t1\t1\t1.7976931348623157e308\t1\t0.1\n")])  # radius × 1.05 overflowed
@example([("x", b"idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t1\t0.5\t1\t0.1\n")] * 2
         + [("x #2", b"idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t1\t0.5\t1\t0.1\n")])
@example([("a", b"idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t1\t0.5\t1\t0.1\n"),
          ("b", b"idx\tlabel\tpredict\tradius\tcorrect\ttime\n7\t1\t1\t0.5\t1\t0.1\n")])  # no image in common
def test_any_uploads_become_curves_or_messages(files):
    logs, problems = _process(files)
    assert len(logs) + len(problems) == len(files)  # every file: one curve or one message
    labels = [log.label for log in logs]
    assert len(set(labels)) == len(labels)  # one clear label per curve
    for label in labels:
        assert label.strip() and all(c.isprintable() for c in label) and len(label) <= MAX_LABEL + 40
        assert not any(label == f"{a} ({a})" for a in [label.split(" (")[0]])  # never "mylog.tsv (mylog.tsv)"
    for log in logs:
        assert len(log) >= 1 and np.all(np.isfinite(log.radius)) and np.all(log.radius >= 0)
    for p in problems:
        assert p.level in ("error", "warning")
        assert p.message.startswith("log: ") and "Traceback" not in p.message and len(p.message) < 2000
        assert str(ROOT) not in p.message


def test_every_bad_content_is_one_message_naming_the_file():
    logs, problems = read_uploads([(f"bad{i}", data) for i, data in enumerate(BAD_CONTENTS)], None)
    assert logs == []
    assert [p.message.split()[1] for p in problems] == [f"bad{i}" for i in range(len(BAD_CONTENTS))]
    assert [p.level for p in problems].count("warning") == 1  # the header-only file: no rows, not unreadable
    assert all(math.isfinite(len(p.message)) for p in problems)


# -- the page itself ---------------------------------------------------------------------------------------------

PAGE_CASES = [
    ([("", b""), ("", b"")], 2, 0),  # two empty files without names
    ([("名前 " * 80, b"\xff\xfe\x00garbage")], 1, 0),  # a very long unicode name, not UTF-8
    ([("sigma_0.25", HEADER.encode())] * 3, 0, 3),  # header only, three times under one name
    ([("ok", HEADER.encode() + b"0\t1\t1\t0.5\t1\t0.1\n"), ("nan", _bad_row(["1", "1", "1", "nan", "1", "0"])),
      ("neg", _bad_row(["1", "1", "1", "-1", "1", "0"])), ("dup", _bad_row(["0", "1", "1", "0.5", "1", "0"]))], 3, 0),
]


@pytest.mark.parametrize("files, n_errors, n_warnings", PAGE_CASES)
def test_bad_uploads_through_the_page_are_messages_not_exceptions(files, n_errors, n_warnings):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at = at.switch_page("pages/Certified_accuracy.py").run()
    at.multiselect(key="acc_shipped").set_value([])
    at.file_uploader(key="acc_uploads").set_value([(name, data, "text/plain") for name, data in files]).run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error if e.value.startswith("log: ")]
    warnings = [w.value for w in at.warning if w.value.startswith("log: ")]
    assert (len(errors), len(warnings)) == (n_errors, n_warnings), (errors, warnings)
    good = [name for name, data in files if data.endswith(b"0.1\n") and name == "ok"]
    if good:
        assert at.table[0].value["log"].tolist() == good
