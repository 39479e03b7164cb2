"""Cells as the views write them: numbers in a column's unit with fixed digits, empty where nothing was measured,
the paper's notation for a configuration that did not run, and the models in the paper's order."""

from __future__ import annotations

from typing import Optional, Sequence

from w2vprof.analysis.data import device_label
from w2vprof.records import ResultRecord

__all__ = [
    "MODEL_ORDER",
    "models_in_order",
    "model_rank",
    "config_cells",
    "status_cell",
    "number",
    "gb",
    "ms",
    "percent",
]

MODEL_ORDER = ("tiny", "base", "large")


def models_in_order(names: Sequence[str]) -> list[str]:
    """The distinct model names, tiny < base < large first, any other after them as they come."""
    present = list(dict.fromkeys(names))
    return [m for m in MODEL_ORDER if m in present] + [m for m in present if m not in MODEL_ORDER]


def model_rank(model: str) -> int:
    """Where a model sorts among the paper's (an unknown name after them)."""
    return models_in_order([model, *MODEL_ORDER]).index(model)


def config_cells(record: ResultRecord) -> list[str]:
    """Which configuration a row measured: device, model, batch, utterance length (s), precision."""
    return [device_label(record), record.model, str(record.batch), f"{record.seconds:g}", record.precision]


def status_cell(status: str) -> str:
    """The paper's notation: OOM for out of memory, "-" where the device has no mixed precision."""
    return {"oom": "OOM", "unsupported": "-"}.get(status, status)


def number(value: Optional[float], digits: int, scale: float = 1.0) -> str:
    """`value / scale` with `digits` decimals; empty for a value that was not measured."""
    return "" if value is None else f"{value / scale:.{digits}f}"


def gb(value: Optional[float]) -> str:
    """Bytes as GB (1e9 bytes), two decimals."""
    return number(value, 2, 1e9)


def ms(seconds: Optional[float]) -> str:
    """Seconds as milliseconds, one decimal."""
    return "" if seconds is None else f"{seconds * 1e3:.1f}"


def percent(fraction: Optional[float]) -> str:
    """A fraction as a percentage, one decimal."""
    return "" if fraction is None else f"{100 * fraction:.1f}"
