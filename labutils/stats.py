"""How precisely a test accuracy is known: the binomial 95% interval (chapters 01, 03, 04, 06, 07).

Example:
    >>> binomial_half_width(0.9, 1000)  # 90% right on 1,000 test examples: known to about ±1.9 points
    0.018594...
    >>> binomial_interval(0.9, 1000)
    (0.8814..., 0.9185...)
"""

from __future__ import annotations

import math


def binomial_half_width(acc: float, n: int, z: float = 1.96) -> float:
    """Half the width of the normal-approximation 95% interval of an accuracy measured on n examples."""
    if n <= 0 or not 0.0 <= acc <= 1.0:
        raise ValueError(f"need an accuracy in [0, 1] and n > 0 examples (got acc={acc!r}, n={n!r})")
    return z * math.sqrt(acc * (1 - acc) / n)


def binomial_interval(acc: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% interval itself: (low, high) = acc ∓ :func:`binomial_half_width`."""
    half = binomial_half_width(acc, n, z)
    return acc - half, acc + half
