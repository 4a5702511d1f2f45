"""widgets/fields.py: one rule per setting, for the sidebar and for links; property-based (hypothesis)."""

from __future__ import annotations

import math

import pytest
from contract import loads_or_refuses, refuses
from hypothesis import example, given
from hypothesis import strategies as st

from widgets.fields import (
    FIELDS,
    MAX_QUERY_PARAMS,
    MAX_QUERY_VALUE,
    MAX_SIGMAS,
    TEXT_FIELDS,
    parse_query,
    parse_sigma_list,
    problem,
    to_query,
)

RANGES = {  # the rules, written out independently of the module
    "sigma": lambda v: math.isfinite(v) and 0 < v <= 10,
    "alpha": lambda v: math.isfinite(v) and 0 < v <= 0.5,
    "n0": lambda v: v == int(v) and 1 <= v <= 10**6,
    "n_max": lambda v: v == int(v) and 1 <= v <= 10**8,
    "batch": lambda v: v == int(v) and 1 <= v <= 10**5,
    "seed": lambda v: v == int(v) and 0 <= v <= 2**53 - 1,
    "test_index": lambda v: v == int(v) and 0 <= v <= 10**7,
}
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-2**70, max_value=2**70))


@given(name=st.sampled_from(sorted(FIELDS)), value=numbers)
@example(name="sigma", value=0.0).via("the value the issue saw silently replaced")
@example(name="seed", value=2**53).via("one past the browser's exact integers")
@example(name="n0", value=1.5)
def test_a_number_is_valid_exactly_when_it_is_in_its_range(name, value):
    why = problem(name, value)
    try:
        expected_ok = RANGES[name](value)
    except (OverflowError, ValueError):  # int(nan), int(inf)
        expected_ok = False
    assert (why is None) == expected_ok, (name, value, why)
    if why is not None:
        assert why.startswith(FIELDS[name].label) and len(why) < 200, why


@pytest.mark.parametrize("value", [None, "0.5", True, [0.5], object()])
def test_a_non_number_is_reported_not_raised(value):
    assert problem("sigma", value).startswith("σ")


@given(st.dictionaries(st.text(max_size=50), st.one_of(st.text(max_size=300), st.lists(st.text(max_size=20),
                                                                                          max_size=3)), max_size=40))
def test_any_query_string_gives_values_or_reasons_never_an_exception(params):
    values, problems = parse_query(params)
    assert set(values) <= set(FIELDS) | set(TEXT_FIELDS)
    for key, v in values.items():
        if key in FIELDS:
            assert isinstance(v, FIELDS[key].kind) and not isinstance(v, bool), (key, v)
        else:
            assert isinstance(v, str) and len(v) <= MAX_QUERY_VALUE
    for key, why in problems.items():
        assert isinstance(why, str) and len(why) < 300 and key not in values
    if len(params) > MAX_QUERY_PARAMS:
        assert "link" in problems


valid = {
    "sigma": st.floats(min_value=1e-6, max_value=10), "alpha": st.floats(min_value=1e-12, max_value=0.5),
    "n0": st.integers(1, 10**6), "n_max": st.integers(1, 10**8), "batch": st.integers(1, 10**5),
    "seed": st.integers(0, 2**53 - 1), "test_index": st.integers(0, 10**7),
    # The noise and the norm travel as text; which pairs are possible is the sidebar's check (rs_core's noises).
    "noise": st.sampled_from(["gaussian", "laplace", "uniform"]), "norm": st.sampled_from(["l2", "l1", "linf"]),
}


@given(st.fixed_dictionaries({}, optional=valid))
def test_a_link_written_for_valid_settings_reads_back_exactly(values):
    back, problems = parse_query(to_query(values))
    assert not problems and back == values  # floats by repr: the same double, bit for bit
    assert all(problem(k, v) is None for k, v in back.items() if k in FIELDS)


def test_a_links_noise_and_norm_are_returned_as_given_even_an_impossible_pair_or_an_unknown_name():
    values, problems = parse_query({"noise": "laplace", "norm": "l2"})
    assert values == {"noise": "laplace", "norm": "l2"} and not problems  # the sidebar shows the pair as invalid
    values, problems = parse_query({"noise": "cauchy"})
    assert values == {"noise": "cauchy"} and not problems


def test_out_of_range_numbers_in_a_link_are_returned_as_given_for_the_sidebar_to_show():
    values, problems = parse_query({"sigma": "-1", "n0": "0", "seed": "1e3", "alpha": "nan"})
    assert values["sigma"] == -1.0 and values["n0"] == 0 and math.isnan(values["alpha"])
    assert problem("sigma", values["sigma"]) and problem("n0", values["n0"])
    assert "seed" in problems and "not a whole number" in problems["seed"]  # "1e3" is not how a link writes an int


@given(st.text(max_size=300))
@example("0.25, 0.5, 1")
@example("٠.٥")
@example("0.5 0.5")
@example(",,,")
@example("1e400")
def test_any_sigma_list_text_is_parsed_or_refused_naming_the_list(text):
    sigmas = loads_or_refuses(lambda: parse_sigma_list(text), "σ list")
    if sigmas is not None:
        assert 1 <= len(sigmas) <= MAX_SIGMAS and len(set(sigmas)) == len(sigmas)
        assert all(problem("sigma", v) is None for v in sigmas)


@given(st.lists(st.floats(min_value=0.001, max_value=10), min_size=1, max_size=MAX_SIGMAS, unique=True))
def test_a_valid_sigma_list_round_trips(sigmas):
    assert parse_sigma_list(", ".join(repr(v) for v in sigmas)) == sigmas


@pytest.mark.parametrize("text, match", [("", "at least one"), ("0.5, 0.5", "twice"), ("0, 1", "σ must be > 0"),
                                         ("a", "not a number"), (", ".join(["1"] * 33), "at most 32"),
                                         ("x" * 1001, "at most 1,000 characters")])
def test_bad_sigma_lists_say_why(text, match):
    refuses(lambda: parse_sigma_list(text), "σ list", match)


def test_an_empty_box_says_so_and_claims_no_value():
    """A browser's number box sends nothing for "abc": the message names the setting and says what happened to the
    text, never a number nobody typed."""
    for name, f in FIELDS.items():
        why = problem(name, None)
        assert why.startswith(f"{f.label} is empty") and f.rule in why and "got" not in why, why
