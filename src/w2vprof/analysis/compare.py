"""Devices side by side: slowdown against a baseline device, batch-4 gain, mixed-precision speedup, OOMs.

Everything is computed from the rows given (the paper's among them with --reference paper): nothing here
knows a device's numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from w2vprof.analysis.data import latest_by_config, sec_per_batch
from w2vprof.errors import BadInput
from w2vprof.records import ResultRecord, length_key

__all__ = ["CompareRow", "BatchGainRow", "MixedSpeedupRow", "Comparison", "compare"]


@dataclass
class CompareRow:
    device: str
    model: str
    batch: int
    precision: str
    sec_per_batch: Optional[float]
    status: str
    slowdown_vs_baseline: Optional[float]
    seconds: float
    sec_per_sequence: Optional[float]
    source: str


@dataclass
class BatchGainRow:
    device: str
    model: str
    precision: str
    seconds: float
    sec_per_sequence_small: float
    sec_per_sequence_large: float
    batch_small: int
    batch_large: int
    per_sequence_gain: float  # 1 - per-sequence time at the large batch / at the small batch


@dataclass
class MixedSpeedupRow:
    device: str
    model: str
    batch: int
    seconds: float
    fp32_sec_per_batch: float
    mixed_sec_per_batch: float
    mixed_speedup: float  # fp32 time / mixed time


@dataclass
class Comparison:
    baseline: Optional[str]
    rows: list[CompareRow]
    batch_gains: list[BatchGainRow]
    mixed_speedups: list[MixedSpeedupRow]

    @property
    def ooms(self) -> list[CompareRow]:
        return [r for r in self.rows if r.status == "oom"]


def compare(rows: list[ResultRecord], baseline: Optional[str] = None, seconds: Optional[float] = None) -> Comparison:
    if not rows:
        raise BadInput("no results to compare: give results files or --reference paper")
    if seconds is not None:
        rows = [r for r in rows if length_key(r.seconds) == length_key(seconds)]
        if not rows:
            raise BadInput(f"no results at --seconds {seconds:g}")
    latest = latest_by_config(rows)
    devices = list(dict.fromkeys(key[0] for key in latest))
    if baseline is not None and baseline not in devices:
        raise BadInput(f"unknown --baseline device {baseline!r}; devices in the data: {', '.join(devices)}")

    baseline_time = {
        key[1:]: sec_per_batch(record) for key, record in latest.items() if key[0] == baseline and record.status == "ok"
    }
    compare_rows = []
    for key, record in latest.items():
        time = sec_per_batch(record) if record.status == "ok" else None
        base = baseline_time.get(key[1:])
        compare_rows.append(
            CompareRow(
                device=key[0], model=record.model, batch=record.batch, precision=record.precision,
                sec_per_batch=time, status=record.status,
                slowdown_vs_baseline=(time / base) if (time is not None and base) else None,
                seconds=record.seconds, sec_per_sequence=(time / record.batch) if time is not None else None,
                source=record.source,
            )
        )
    compare_rows.sort(key=lambda r: (devices.index(r.device), r.model, r.seconds, r.batch, r.precision != "fp32"))
    return Comparison(baseline, compare_rows, _batch_gains(compare_rows), _mixed_speedups(compare_rows))


def _batch_gains(rows: list[CompareRow]) -> list[BatchGainRow]:
    """Per device, model, precision and length: the smallest batch against each larger one measured."""
    groups: dict[tuple, list[CompareRow]] = {}
    for row in rows:
        if row.sec_per_sequence is not None:
            groups.setdefault((row.device, row.model, row.precision, row.seconds), []).append(row)
    gains = []
    for (device, model, precision, seconds), members in groups.items():
        members.sort(key=lambda r: r.batch)
        small = members[0]
        for large in members[1:]:
            gains.append(
                BatchGainRow(
                    device, model, precision, seconds, small.sec_per_sequence, large.sec_per_sequence,
                    small.batch, large.batch, 1 - large.sec_per_sequence / small.sec_per_sequence,
                )
            )
    return gains


def _mixed_speedups(rows: list[CompareRow]) -> list[MixedSpeedupRow]:
    by_key = {(r.device, r.model, r.batch, r.seconds, r.precision): r for r in rows}
    speedups = []
    for (device, model, batch, seconds, precision), row in by_key.items():
        if precision != "fp32" or row.sec_per_batch is None:
            continue
        mixed = by_key.get((device, model, batch, seconds, "mixed"))
        if mixed is not None and mixed.sec_per_batch:
            speedups.append(
                MixedSpeedupRow(device, model, batch, seconds, row.sec_per_batch, mixed.sec_per_batch,
                                row.sec_per_batch / mixed.sec_per_batch)
            )
    return speedups
