"""Printed radii and bounds never exceed the certified values."""

from decimal import Decimal

import numpy as np
import pytest
from scipy import stats

from rs_core.logs.certify_logs import CertifyLog, format_certify_log, parse_certify_log
from rs_core.rounding import floor_str, floor_to
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
