"""What a batch is: waveforms at 16 kHz, zero-padded to the longest utterance, with their true lengths.

A workload is an endless, seeded stream of batches. The profiler cycles the timed steps through it, and
records its length distribution (`length_stats`).
"""
from __future__ import annotations

from w2vprof.workload.base import (
    SAMPLE_RATE,
    Batch,
    Workload,
    SyntheticWorkload,
    length_stats,
    make_workload,
)

__all__ = ["SAMPLE_RATE", "Batch", "Workload", "SyntheticWorkload", "length_stats", "make_workload"]
