"""Printed radii and bounds never exceed the certified values."""

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from scipy import stats

from rs_core.logs.certify_logs import CertifyLog, format_certify_log, parse_certify_log
from rs_core.rounding import (
    convert_cohen_log_text,
    floor_str,
    floor_to,
    lower_from_cohen_format,
    lower_str_from_cohen_format,
)
from rs_core.smoothing.stats import clopper_pearson_lower


def test_floor_never_exceeds_the_value_and_is_within_one_unit():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(20_000) * 4, [0.0, 0.3, 1.25, 2.675, 1e-9, 3.8114565633899518]])
    for v in values:
        for d in (3, 4, 5):
            s = floor_str(v, d)
            assert len(s.split(".")[1]) == d
            assert Decimal(s) <= Decimal(v) < Decimal(s) + Decimal(10) ** -d  # exact comparison
            assert floor_to(v, d) <= v < floor_to(v, d) + 10.0**-d + 1e-12


def test_the_issue_example_no_longer_rounds_up():
    """σ = 0.5, N = 10⁴, α = 0.001: counts 9,960 and 9,961 certify 1.24579… and 1.24929…,
    both once logged as 1.25."""
    radii = [0.5 * stats.norm.ppf(clopper_pearson_lower(k, 10_000, 0.001)) for k in (9_960, 9_961)]
    assert [f"{r:.3}" for r in radii] == ["1.25", "1.25"]  # what Cohen et al.'s format writes
    assert [floor_str(r) for r in radii] == ["1.2457", "1.2492"]
    log = CertifyLog.from_rows("x", [(0, 1, 1, radii[0], 1, 0.1), (1, 1, 1, radii[1], 1, 0.1)])
    back = parse_certify_log(format_certify_log(log), "back")
    assert np.all(back.radius <= np.array(radii))
    assert back.certified_accuracy([1.25]).tolist() == [0.0]  # neither certificate reaches 1.25


@pytest.mark.parametrize("value, decimals, name", [(float("nan"), 4, "value"), (float("inf"), 4, "value"),
                                                   (1.0, -1, "decimals"), (1.0, 2.5, "decimals")])
def test_bad_arguments_name_themselves(value, decimals, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        floor_str(value, decimals)


# --- Cohen-format radii ({:.3}, rounded to nearest) lowered to a value they provably bound (issue 27) ---


def _third_digit_unit(r: float) -> Decimal:
    """The unit of r's 3rd significant digit (r > 0)."""
    return Decimal(1).scaleb(Decimal(r).adjusted() - 2)


@given(st.floats(min_value=0.0, max_value=10.0, allow_nan=False))
@example(0.0995)
@example(0.09995)
@example(0.099949)
@example(1.5992887573691656)
@example(9.996)
@example(1e-5)
@example(0.2)
@example(0.1995)
@example(0.25)
@example(5e-324)
@example(0.17750000000000002)
@example(10.0)
def test_the_converted_cohen_radius_never_exceeds_the_true_one_and_is_close(r):
    text = f"{r:.3}"
    low = lower_str_from_cohen_format(text)
    assert len(low.split(".")[1]) == 4 and Decimal(low) >= 0
    assert Decimal(low) <= Decimal(r)  # exact: the printed bound is never above the radius it replaces
    assert lower_from_cohen_format(text) <= r
    if r > 0:  # within one unit of r's 3rd significant digit, plus the 4-decimal floor
        assert Decimal(r) - Decimal(low) <= _third_digit_unit(r) + Decimal("0.0001")


@pytest.mark.parametrize("text, expected", [
    ("0.178", "0.1775"), ("1.6", "1.5950"), ("0.0761", "0.0760"), ("0.2", "0.1995"), ("0.25", "0.2495"),
    ("0.1", "0.0999"), ("1.0", "0.9995"), ("1e+01", "9.9950"), ("3.2", "3.1950"), ("0.0", "0.0000"),
    ("0.00123", "0.0012"), ("5.12e-05", "0.0000"), ("0.928", "0.9275"), ("2.6", "2.5950"),
])
def test_cohen_format_cases(text, expected):
    assert lower_str_from_cohen_format(text) == expected
    assert lower_from_cohen_format(text) == float(expected)


@pytest.mark.parametrize("text", ["-0.5", "1.2345", "0.1775", "nan", "inf", "", " 0.5", "+0.5", "1,5", "0x1p-2"])
def test_what_cohen_format_cannot_print_is_refused_by_name(text):
    with pytest.raises(ValueError, match="^text:"):
        lower_str_from_cohen_format(text)


def test_a_log_is_converted_radius_by_radius_and_a_converted_log_is_refused():
    old = ("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t7\t7\t1.6\t1\t0:00:00.9\n"
           "20\t9\t-1\t0.0\t0\t0:00:00.1\n40\t1\t2\t0.0761\t0\t0:00:00.1\n")
    new = convert_cohen_log_text(old)
    assert new == ("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t7\t7\t1.5950\t1\t0:00:00.9\n"
                   "20\t9\t-1\t0.0000\t0\t0:00:00.1\n40\t1\t2\t0.0760\t0\t0:00:00.1\n")
    with pytest.raises(ValueError, match="^text: line 2: text: has more than 3 significant digits"):
        convert_cohen_log_text(new)
    with pytest.raises(ValueError, match="^text: is not a certify log"):
        convert_cohen_log_text("a\tb\n")
