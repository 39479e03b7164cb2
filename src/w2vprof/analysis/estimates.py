"""The paper's Sec. 3.3 / 4.1 arithmetic on measurements, one module per analysis: federated training time
(analysis.fl_estimate), hardware forecast (analysis.forecast) and which devices can hold which model
(analysis.feasibility). This module gathers their public names for existing imports.
"""

from __future__ import annotations

from w2vprof.analysis.data import PAPER_SECONDS
from w2vprof.analysis.feasibility import (
    Feasibility,
    FeasibilityRow,
    MemoryFit,
    MemoryFits,
    feasibility,
    fit_memory,
    training_memory,
)
from w2vprof.analysis.fl_estimate import FlEstimateRow, FlSetting, fl_estimate
from w2vprof.analysis.forecast import ForecastResult, forecast

__all__ = [
    "PAPER_SECONDS",
    "FlSetting",
    "FlEstimateRow",
    "fl_estimate",
    "ForecastResult",
    "forecast",
    "MemoryFit",
    "MemoryFits",
    "fit_memory",
    "training_memory",
    "FeasibilityRow",
    "Feasibility",
    "feasibility",
]
