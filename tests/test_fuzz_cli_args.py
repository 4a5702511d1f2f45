"""Property-based tests of the command line's arguments: every value is either accepted within its
range or refused by argparse (exit 2, a message naming the option) before any work starts."""

from __future__ import annotations

import argparse
import contextlib
import io
import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from rs_core.cli.main import build_parser

# (command line before the value, option, check on the parsed value)
CHECKS = {
    "--N": lambda v: isinstance(v, int) and 1 <= v <= 10**12,
    "--N0": lambda v: isinstance(v, int) and 1 <= v <= 10**12,
    "--batch": lambda v: isinstance(v, int) and 1 <= v <= 10**12,
    "--skip": lambda v: isinstance(v, int) and v >= 1,
    "--max": lambda v: isinstance(v, int) and v >= -1,
    "--alpha": lambda v: 0 < v < 1,
    "--seed": lambda v: isinstance(v, int) and 0 <= v < 2**63,
    "--device": lambda v: torch.device(v).type == "cpu" or torch.cuda.is_available(),
}
CERTIFY = ["certify", "mnist", "model.pth", "0.5", "out.tsv"]

values = (st.text(max_size=12) | st.integers(-2**70, 2**70).map(str)
          | st.floats(allow_nan=True, allow_infinity=True).map(repr)
          | st.sampled_from(["nan", "inf", "-0", "0", "1e3", "1_000", "١٢", "0x10", "cuda", "cuda:7", "meta", "cpu",
                             "cpu:0", "tpu", "", "-1"]))


def _parse(argv: list[str]) -> tuple[argparse.Namespace | None, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return build_parser().parse_args(argv), err.getvalue()
        except SystemExit as exit_:
            assert exit_.code == 2
            return None, err.getvalue()


@pytest.mark.parametrize("option", list(CHECKS))
@given(value=values)
@example(value="0")
def test_each_certify_option_is_checked_at_the_door(option, value):
    args, err = _parse([*CERTIFY, f"{option}={value}"])
    if args is None:
        assert f"argument {option}" in err, err
    else:
        assert CHECKS[option](getattr(args, option.lstrip("-").replace("-", "_"))), (option, value)


@given(value=values)
@example(value="nan")
@example(value="-0.5")
def test_sigma_is_finite_and_positive(value):
    args, err = _parse(["certify", "mnist", "model.pth", value, "out.tsv"])
    if args is None:
        assert "argument sigma" in err or "error:" in err, err
    else:
        assert math.isfinite(args.sigma) and args.sigma > 0


@given(values=st.lists(values, min_size=3, max_size=3))
def test_analyze_radius_range_and_rho(values):
    args, err = _parse(["analyze", "log.tsv", "--radius-range", *values, f"--rho={values[0]}"])
    if args is None:
        assert "argument --radius-range" in err or "argument --rho" in err, err
    else:
        assert all(math.isfinite(v) and v >= 0 for v in args.radius_range) and 0 < args.rho < 1
