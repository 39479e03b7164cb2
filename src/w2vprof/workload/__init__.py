"""What a batch is: waveforms at 16 kHz, zero-padded to the longest utterance, with their true lengths.

A workload is an endless, seeded stream of batches. The profiler cycles the timed steps through it, and
records its length distribution (`length_stats`). Three kinds: fixed-length synthetic (the default), synthetic
with a length distribution (`--length-dist`), and real audio (`--audio`: a folder or a Common Voice manifest).
Heavy modules (audio decoding, partitioning, corpus generation) are imported lazily by their users.
"""

from __future__ import annotations

from w2vprof.workload.base import (
    SAMPLE_RATE,
    Batch,
    SyntheticWorkload,
    Workload,
    collate,
    length_stats,
)
from w2vprof.workload.factory import make_workload, workload_name
from w2vprof.workload.lengths import LengthDistribution, LengthDistributionWorkload, parse_length_dist

__all__ = [
    "SAMPLE_RATE",
    "Batch",
    "Workload",
    "SyntheticWorkload",
    "LengthDistribution",
    "LengthDistributionWorkload",
    "parse_length_dist",
    "collate",
    "length_stats",
    "make_workload",
    "workload_name",
]
