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


__all__ = ["RADIUS_DECIMALS", "floor_str", "floor_to"]
