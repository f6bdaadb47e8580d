"""Tolerances from the sampling math (ARCHITECTURE.md, "Sampling and unsampling"): a
block of `size` bytes is sampled with p = 1 - exp(-size/rate) and then stands for
1/p blocks; tests bound the estimates by the standard deviation this gives, never by
magic numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping


def sample_weight(size: int, rate: int) -> float:
    """The bytes one sampled block of `size` bytes stands for: size / p."""
    return size / -math.expm1(-size / rate)


def relative_sd(n_blocks: int, size: int, rate: int) -> float:
    """Relative standard deviation of the unsampled estimate of n_blocks allocations
    of `size` bytes: each is sampled with p = 1 - exp(-size/rate), independently
    (a Poisson process over bytes), so K ~ Binomial(n, p) and est = K*size/p."""
    if rate <= 1 or n_blocks == 0:
        return 0.0
    p = -math.expm1(-size / rate)
    return math.sqrt((1 - p) / (n_blocks * p))


def assert_estimate(estimate: float, truth: float, rel_sd: float, limit: float) -> None:
    """The estimate is within `limit` (the issue's bound) and within 5 standard
    deviations of the sampling math, which must itself fit inside the limit."""
    assert_estimate_between(estimate, truth, truth, rel_sd, limit)


def assert_estimate_between(
    estimate: float, low: float, high: float, rel_sd: float, limit: float
) -> None:
    """assert_estimate for a truth known to lie from `low` to `high`: the error is how far
    the estimate falls outside, relative to the nearer end."""
    assert 5 * rel_sd <= limit, f"the fixture is too small for ±{limit:.0%}: sd {rel_sd:.2%}"
    nearer = min(max(estimate, low), high)
    error = (estimate - nearer) / nearer if nearer else 0.0
    truth = f"{low:.0f}" if low == high else f"{low:.0f} to {high:.0f}"
    assert abs(error) <= limit, f"estimate {estimate:.0f} vs truth {truth} ({error:+.2%})"
    if rel_sd:
        assert abs(error) <= 5 * rel_sd, f"error {error:+.2%} exceeds 5 sd ({rel_sd:.2%} each)"


def blocks_estimate_sd(sizes: Mapping[int, int], rate: int) -> tuple[int, float]:
    """The bytes of blocks of several sizes ({size: count}) and the relative standard
    deviation of their estimate at `rate`, each size sampled independently."""
    truth = sum(size * count for size, count in sizes.items())
    variance = sum(
        (relative_sd(count, size, rate) * count * size) ** 2 for size, count in sizes.items()
    )
    return truth, math.sqrt(variance) / truth
