"""Summary statistics of per-step times (pure functions: tested with exact numbers)."""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["quantile", "time_stats"]


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), q in [0, 1]."""
    if not values:
        raise ValueError("quantile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def time_stats(times: Sequence[float]) -> dict[str, float]:
    """median, mean, std (sample, n-1; 0 for one value), min, max and IQR of `times` in seconds."""
    n = len(times)
    mean = sum(times) / n
    variance = sum((t - mean) ** 2 for t in times) / (n - 1) if n > 1 else 0.0
    return {
        "median": quantile(times, 0.5),
        "mean": mean,
        "std": math.sqrt(variance),
        "min": min(times),
        "max": max(times),
        "iqr": quantile(times, 0.75) - quantile(times, 0.25),
    }
