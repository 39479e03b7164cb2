"""Ordinary least squares for one predictor, shared by the feasibility fit and the Fig. 3 plots."""

from __future__ import annotations

from typing import Sequence

__all__ = ["linear_fit"]


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least squares y = a + b x: returns (a, b, R^2).

    With fewer than two distinct x the slope is undefined; callers check that first, and here it is 0 so a
    plot of a single length still draws.  R^2 is 1 when every y is equal (nothing left to explain).
    """
    n = len(xs)
    if n == 0:
        raise ValueError("linear_fit needs at least one point")
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    intercept = mean_y - slope * mean_x
    ss_tot = sum((y - mean_y) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    return intercept, slope, (1 - ss_res / ss_tot) if ss_tot else 1.0
