"""Printing certified quantities without ever overstating them.

A radius or a lower confidence bound printed as ``f"{r:.3}"`` is rounded to the
nearest: at σ = 0.5, N = 10⁴, α = 0.001 the radii 1.2458 and 1.2493 both print as
1.25, and a certified-accuracy table read from such a log counts both at r = 1.25.
:func:`floor_str` rounds towards −∞ in exact decimal arithmetic (the float's exact
binary value, not a float product that may itself round up), so a printed value is
never above the certified one.

>>> floor_str(1.2458, 3), floor_str(1.2493, 3), floor_str(0.0, 4), floor_str(2.0, 4)
('1.245', '1.249', '0.0000', '2.0000')
>>> floor_str(0.3, 2)  # 0.3 is stored as 0.29999999999999998889…
'0.29'
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_FLOOR, Decimal

RADIUS_DECIMALS = 4
"""Decimals of radii in our logs and downloads (rounded down)."""


def floor_str(value: float, decimals: int = RADIUS_DECIMALS) -> str:
    """``value`` with ``decimals`` digits after the point, rounded down (towards −∞), exactly."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"value: must be finite, got {value!r}")
    if isinstance(decimals, bool) or not isinstance(decimals, int) or decimals < 0:
        raise ValueError(f"decimals: must be an integer >= 0, got {decimals!r}")
    quantum = Decimal(1).scaleb(-decimals)
    return str(Decimal(value).quantize(quantum, rounding=ROUND_FLOOR))


def floor_to(value: float, decimals: int = RADIUS_DECIMALS) -> float:
    """The float of :func:`floor_str` — never above ``value`` (the nearest float below if need be)."""
    out = float(floor_str(value, decimals))
    while out > value:  # the decimal may round up when converted back to binary
        out = math.nextafter(out, -math.inf)
    return out


# What ``f"{r:.3}"`` prints for a finite r >= 0: fixed point ("0.178", "1.6", "0.0") or, below 1e-4, exponent
# notation ("5.12e-05"). Leading "+", spaces or digits beyond ASCII are refused: a log holds none of them.
_COHEN_NUMBER = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,20})?(?:e[-+][0-9]{1,3})?")

COHEN_SIGNIFICANT_DIGITS = 3
"""``{:.3}`` keeps 3 significant digits (not 3 decimals)."""


def lower_str_from_cohen_format(text: str, decimals: int = RADIUS_DECIMALS) -> str:
    """A value ``text`` provably bounds from below, with ``decimals`` digits (rounded down), exactly.

    ``text`` is a radius as Cohen et al.'s logs print it, ``f"{r:.3}"``: r rounded to nearest at 3 significant
    digits, trailing zeros dropped ("0.2" may be 0.1995…). So r ≥ text − ½ unit of the 3rd significant digit,
    whatever digits were printed; a power of ten is also what values just below it round up to, from the next
    lower decade ("0.1" from r ≥ 0.09995), so there the half unit is the lower decade's. The result is that
    bound rounded down to ``decimals`` and never below 0; "0.0" (an abstention: ``{:.3}`` prints no positive
    value as zero) stays 0.

    >>> [lower_str_from_cohen_format(t) for t in ("0.178", "1.6", "0.0761", "0.2", "0.1", "0.0", "5.12e-05")]
    ['0.1775', '1.5950', '0.0760', '0.1995', '0.0999', '0.0000', '0.0000']
    """
    if not isinstance(text, str) or not _COHEN_NUMBER.fullmatch(text):
        raise ValueError(f"text: must be a number >= 0 as f'{{r:.3}}' prints it, got {text!r}")
    if isinstance(decimals, bool) or not isinstance(decimals, int) or decimals < 0:
        raise ValueError(f"decimals: must be an integer >= 0, got {decimals!r}")
    printed = Decimal(text)
    quantum = Decimal(1).scaleb(-decimals)
    if printed == 0:
        return str(Decimal(0).quantize(quantum))
    digits = printed.normalize().as_tuple().digits
    if len(digits) > COHEN_SIGNIFICANT_DIGITS:
        raise ValueError(f"text: has more than {COHEN_SIGNIFICANT_DIGITS} significant digits, so it was not "
                         f"written with {{:.3}}, got {text!r}")
    unit = Decimal(1).scaleb(printed.adjusted() - (COHEN_SIGNIFICANT_DIGITS - 1))  # of the 3rd significant digit
    if digits == (1,):  # a power of ten: the decade below rounds up to it with its own, 10× smaller, unit
        unit /= 10
    lower = max(printed - unit / 2, Decimal(0))
    return str(lower.quantize(quantum, rounding=ROUND_FLOOR))


def lower_from_cohen_format(text: str, decimals: int = RADIUS_DECIMALS) -> float:
    """The float of :func:`lower_str_from_cohen_format` — never above any r with ``f"{r:.3}" == text``.

    (The nearest float to a decimal ≤ r is ≤ r when r is itself a float.)

    >>> lower_from_cohen_format("1.6"), lower_from_cohen_format("0.0761")
    (1.595, 0.076)
    """
    return float(lower_str_from_cohen_format(text, decimals))


COHEN_CONVERSION_RULE = ("radius written by Cohen et al.'s f'{r:.3}' (rounded to nearest, 3 significant digits) "
                         "replaced by the value it provably bounds: printed − ½ unit of the 3rd significant digit "
                         "(of the decade below for a power of ten), rounded down to 4 decimals, never below 0 "
                         "(rs_core.rounding.lower_str_from_cohen_format)")
"""What a converted log's ``.meta.json`` says under ``radius_conversion.rule``."""


def convert_cohen_log_text(text: str) -> str:
    """A certify log (``idx label predict radius correct time``) with each radius replaced by
    :func:`lower_str_from_cohen_format` of it; every other byte of each row kept.

    ``ValueError`` (naming the line) for a row whose radius is not in Cohen et al.'s format, e.g. a log that
    was already converted or written with 4 decimals.
    """
    lines = text.splitlines()
    if not lines or lines[0].split("\t")[:4] != ["idx", "label", "predict", "radius"]:
        raise ValueError("text: is not a certify log (the header must start idx, label, predict, radius)")
    out = [lines[0]]
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) < 4:
            raise ValueError(f"text: line {number} has {len(fields)} fields, expected at least 4")
        try:
            fields[3] = lower_str_from_cohen_format(fields[3])
        except ValueError as err:
            raise ValueError(f"text: line {number}: {err}") from None
        out.append("\t".join(fields))
    return "\n".join(out) + "\n"


__all__ = ["COHEN_CONVERSION_RULE", "COHEN_SIGNIFICANT_DIGITS", "RADIUS_DECIMALS", "convert_cohen_log_text",
           "floor_str", "floor_to", "lower_from_cohen_format", "lower_str_from_cohen_format"]
