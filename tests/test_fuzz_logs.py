"""Property-based tests of the certify-log reader and the radii a user types.

Any text or bytes either parse into a log whose every row is meaningful (finite radius >= 0,
correct = [predict == label], abstentions at radius 0, each example once) or raise ValueError
starting ``log: <name>``; a valid log survives a write/read round trip.
"""

from __future__ import annotations

import math

import numpy as np
from contract import loads_or_refuses, refuses
from hypothesis import example, given
from hypothesis import strategies as st

from rs_core.logs.certify_logs import CertifyLog, format_certify_log, parse_certify_log, parse_radii, radius_grid

HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"


@st.composite
def rows(draw):
    n = draw(st.integers(0, 30))
    idx = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n, unique=True))
    out = []
    for i in idx:
        label = draw(st.integers(0, 9))
        predict = draw(st.sampled_from([-1, label, (label + 1) % 10]))
        radius = 0.0 if predict == -1 else draw(st.floats(0, 5, allow_nan=False))
        out.append((i, label, predict, radius, int(predict == label), draw(st.floats(0, 1e4))))
    return out


def _check_log(log: CertifyLog) -> None:
    assert np.all(np.isfinite(log.radius)) and np.all(log.radius >= 0)
    assert np.array_equal(log.correct, (log.predict == log.true_label).astype(int))
    assert np.all(log.radius[log.predict == -1] == 0)
    assert len(set(log.idx.tolist())) == len(log)
    assert np.all(np.isfinite(log.seconds)) and np.all(log.seconds >= 0)


@given(rows())
def test_valid_logs_round_trip(rs):
    log = CertifyLog.from_rows("x", rs)
    back = parse_certify_log(format_certify_log(log), "x", "x.tsv")
    assert back.idx.tolist() == log.idx.tolist() and back.predict.tolist() == log.predict.tolist()
    assert np.all(back.radius <= log.radius) and np.all(log.radius - back.radius < 1e-4)  # rounded down only
    _check_log(back)


@given(st.binary(max_size=2000) | st.text(max_size=2000).map(lambda t: HEADER + t))
@example(HEADER + "0\t1\t1\t0.5\t1\t0.1\x00\n")  # a NUL byte (csv raised its own error type before 3.11)
@example(HEADER + "0\t1\t1\t" + "9" * 200_000 + "\t1\t0.1\n")  # a field over csv's 128 KB limit
@example(HEADER + "0\t1\t1\t0.5\t1\t" + "1" * 400 + " days, 0:00:00\n")  # OverflowError escaped before
@example(HEADER + "0\t1\t1\tnan\t1\t0.1\n")
@example(HEADER + "0\t1\t2\t0.5\t1\t0.1\n")  # correct = 1 but predict ≠ label
def test_any_text_or_bytes_parse_or_refuse(data):
    log = loads_or_refuses(lambda: parse_certify_log(data, "x", "upload.tsv"), "log: upload.tsv")
    if log is not None:
        _check_log(log)


HOSTILE = ["nan", "inf", "-inf", "-1", "1e999", "1_000", "١٢", "9" * 30, "", " ", "\x00", "0x10", "1e-400",
           "-0.0", "+3", "3.", ".5", "2:00:00", "1 day, 0:00:01", "99999999999999999999 days, 0:00:00"]


@given(rs=rows().filter(bool), line=st.integers(0, 10**6), field=st.integers(0, 5),
       value=st.sampled_from(HOSTILE) | st.text(max_size=12))
def test_one_hostile_field_parses_or_refuses(rs, line, field, value):
    text = format_certify_log(CertifyLog.from_rows("x", rs)).splitlines()
    cells = text[1 + line % len(rs)].split("\t")
    cells[field] = value
    text[1 + line % len(rs)] = "\t".join(cells)
    log = loads_or_refuses(lambda: parse_certify_log("\n".join(text) + "\n", "x", "edited.tsv"), "log: edited.tsv")
    if log is not None:
        _check_log(log)


def test_duplicate_rows_and_limits_are_refused():
    refuses(lambda: parse_certify_log(HEADER + "3\t1\t1\t0.5\t1\t0.1\n3\t1\t1\t0.5\t1\t0.1\n", "x", "d.tsv"),
            "log: d.tsv", "idx 3 appears twice")
    many = HEADER + "".join(f"{i}\t0\t0\t0.1\t1\t0.1\n" for i in range(11))
    refuses(lambda: parse_certify_log(many, "x", "m.tsv", max_rows=10), "log: m.tsv", "more than 10 rows")
    refuses(lambda: parse_certify_log(many, "x", "m.tsv", max_bytes=100), "log: m.tsv", "over the limit")


@given(st.text(max_size=200))
@example("0, 1e999")
@example(", ".join(["1"] * 20_000))
def test_typed_radii_parse_or_refuse(text):
    radii = loads_or_refuses(lambda: parse_radii(text), "radii:")
    if radii is not None:
        assert radii.size >= 1 and np.all(np.isfinite(radii)) and np.all(radii >= 0)


@given(start=st.floats(allow_nan=True), stop=st.floats(allow_nan=True), step=st.floats(allow_nan=True))
@example(start=0.0, stop=1e9, step=1e-9)  # 10**18 radii: an unbounded allocation before
@example(start=0.0, stop=1.0, step=0.0)
def test_radius_ranges_are_bounded(start, stop, step):
    grid = loads_or_refuses(lambda: radius_grid(start, stop, step), "radius_range:")
    if grid is not None:
        assert 1 <= grid.size <= 10_001 and all(math.isfinite(r) for r in grid)
