"""How client updates are combined: FedAvg (weights = examples) and loss-based re-weighting (Gao et al. 2022).

Pure functions of plain numbers and numpy arrays, so the arithmetic is tested exactly and needs no Flower.
Weights are normalised as floats (never integer division: 3 clients of 7 examples each are 1/3 each, not 0).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["aggregation_label", "aggregation_weights", "average_arrays"]


def aggregation_label(aggregation: str, loss_weighting: str, temperature: float) -> str:
    """What rounds.csv calls the rule: fedavg, loss:exp(T=0.5), loss:inverse."""
    if aggregation == "fedavg":
        return "fedavg"
    if loss_weighting == "exp":
        return f"loss:exp(T={temperature:g})"
    return "loss:inverse"


def aggregation_weights(
    examples: Sequence[int],
    losses: Sequence[float],
    aggregation: str,
    loss_weighting: str = "exp",
    temperature: float = 1.0,
) -> list[float]:
    """Normalised weight of each client's update (they sum to 1); a client with a non-finite loss gets 0.

    fedavg:        w_i = n_i / sum(n)
    loss, exp:     w_i = exp(-l_i / T) / sum_j exp(-l_j / T)   (computed as exp(-(l_i - min l) / T): no overflow)
    loss, inverse: w_i = (1 / l_i) / sum_j (1 / l_j)           (losses must be > 0; the contrastive loss is)
    Lower training loss -> larger weight: updates from clients the model already explains well count more, which
    damps clients whose data (or training) went wrong.
    Raises ValueError when no client has a usable weight.
    """
    if len(examples) != len(losses):
        raise ValueError("one loss and one example count per client")
    usable = [math.isfinite(loss) and n > 0 for n, loss in zip(examples, losses)]
    if aggregation == "fedavg":
        raw = [float(n) if ok else 0.0 for n, ok in zip(examples, usable)]
    elif aggregation == "loss" and loss_weighting == "exp":
        if temperature <= 0:
            raise ValueError("the temperature T must be positive")
        finite = [loss for loss, ok in zip(losses, usable) if ok]
        lowest = min(finite) if finite else 0.0
        raw = [math.exp(-(loss - lowest) / temperature) if ok else 0.0 for loss, ok in zip(losses, usable)]
    elif aggregation == "loss" and loss_weighting == "inverse":
        raw = [1.0 / loss if ok and loss > 0 else 0.0 for loss, ok in zip(losses, usable)]
    else:
        raise ValueError(f"unknown aggregation {aggregation!r} / {loss_weighting!r}")
    total = math.fsum(raw)
    if not total > 0:
        raise ValueError("no client update has a usable weight (every loss non-finite or no examples)")
    return [w / total for w in raw]


def average_arrays(updates: Sequence[dict[str, np.ndarray]], weights: Sequence[float]) -> dict[str, np.ndarray]:
    """sum_i w_i * update_i, key by key, accumulated in float64 and returned in each array's own dtype.

    Integer arrays (the model's update counter, which drives the Gumbel temperature schedule) are rounded, not
    truncated; every update must have the same keys and shapes.
    """
    import numpy as np

    if not updates or len(updates) != len(weights):
        raise ValueError("one weight per update, and at least one update")
    averaged: dict[str, np.ndarray] = {}
    for key, first in updates[0].items():
        total = np.zeros(first.shape, dtype=np.float64)
        for update, weight in zip(updates, weights):
            if weight:
                total += float(weight) * update[key].astype(np.float64, copy=False)
        if np.issubdtype(first.dtype, np.integer) or first.dtype == np.bool_:
            total = np.rint(total)
        averaged[key] = np.asarray(total, dtype=first.dtype)  # 0-d stays an array, not a numpy scalar
    return averaged
