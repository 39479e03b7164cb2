"""The paper's settings, defined once: the configuration of its Fig. 2 and Table 2, and the defaults w2vprof reads
results against them with (the usable share of a device's memory).

The lowest layer (it imports only w2vprof.errors), so every layer above can take its settings from here instead
of spelling them again. Precisions are the record's vocabulary: `w2vprof.records.PRECISIONS`.
"""

from __future__ import annotations

from typing import NamedTuple

from w2vprof.errors import SettingError

__all__ = [
    "Configuration",
    "PAPER_MODEL",
    "PAPER_BATCH",
    "PAPER_SECONDS",
    "PAPER_PRECISION",
    "FIG2_CONFIG",
    "TABLE2_MODELS",
    "TABLE2_BATCHES",
    "USABLE_FRACTION",
    "check_usable_fraction",
]


class Configuration(NamedTuple):
    """One training configuration as tables select it: (model, batch, seconds, precision).

    A tuple, so it compares equal to the plain (model, batch, seconds, precision) keys the analyses build; compare
    seconds through `records.length_key` (5.5 is exact, so the paper's own value needs no rounding)."""

    model: str
    batch: int
    seconds: float
    precision: str


PAPER_MODEL = "base"
PAPER_BATCH = 4
#: The paper's average utterance (CommonVoice Italian): preferred when rows exist at several lengths.
PAPER_SECONDS = 5.5
PAPER_PRECISION = "fp32"
#: Fig. 2 of the paper (and its recipes' reference point): base, batch 4, 5.5 s, FP32.
FIG2_CONFIG = Configuration(PAPER_MODEL, PAPER_BATCH, PAPER_SECONDS, PAPER_PRECISION)

#: Table 2 measures both models at batch 1 and 4 (at PAPER_SECONDS, in both precisions).
TABLE2_MODELS = ("base", "large")
TABLE2_BATCHES = (1, 4)

#: The share of a device's memory training may use: the OS, its services and the allocator's slack take the rest.
USABLE_FRACTION = 0.7


def check_usable_fraction(fraction: float) -> float:
    """The fraction itself where it is in (0, 1]; SettingError naming `usable_fraction` otherwise."""
    if not 0 < fraction <= 1:
        raise SettingError("usable_fraction", f"must be in (0, 1], got {fraction:g}")
    return fraction
