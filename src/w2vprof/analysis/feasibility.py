"""Feasibility: which devices can hold which model. Memory is fitted as a + b x (batch x seconds) per model and
precision over measured rows, then compared with each device profile's usable memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from w2vprof.analysis.data import PAPER_SECONDS, DeviceProfile, device_label, find_profile, latest_by_config
from w2vprof.analysis.fit import linear_fit
from w2vprof.errors import BadInput
from w2vprof.records import ResultRecord

__all__ = [
    "PARTS",
    "PEAK",
    "Feasibility",
    "FeasibilityRow",
    "MemoryFit",
    "MemoryFits",
    "feasibility",
    "fit_memory",
    "training_memory",
]

PEAK, PARTS = "peak_mem_bytes", "act+param+grad+optim"


def training_memory(record: ResultRecord) -> dict[str, int]:
    """The memory measures a row offers: its measured peak and/or the sum of its parts, by name."""
    found = {}
    if record.peak_mem_bytes:
        found[PEAK] = record.peak_mem_bytes
    parts = [record.act_mem_bytes, record.param_bytes, record.grad_bytes, record.optim_state_bytes]
    known = [p for p in parts if p is not None]
    if len(known) == len(parts):
        found[PARTS] = sum(known)
    return found


@dataclass
class MemoryFit:
    model: str
    precision: str
    intercept_bytes: float  # a: memory that does not grow with the input (weights, grads, optimizer, runtime)
    bytes_per_batch_second: float  # b: memory per utterance-second in the batch
    r2: float
    points: int
    min_batch_seconds: float  # measured range of batch x seconds
    max_batch_seconds: float
    memory_source: str  # peak_mem_bytes | act+param+grad+optim
    devices: str  # the devices whose rows were fitted ('; ' separated)

    def memory_bytes(self, batch: int, seconds: float) -> float:
        return self.intercept_bytes + self.bytes_per_batch_second * batch * seconds


@dataclass
class MemoryFits:
    fits: list[MemoryFit]
    skipped: list[str] = field(default_factory=list)  # model/precision groups without enough points, and why


def fit_memory(rows: list[ResultRecord]) -> MemoryFits:
    """Least squares memory = a + b x (batch x seconds), per model and precision, over measured ok rows.

    One measure per fit, never a mix: the measured peak when at least two batch x seconds have it, else the
    sum of activations, parameters, gradients and optimizer state (what `profile` counts without a peak).
    """
    groups: dict[tuple[str, str], list[ResultRecord]] = {}
    for record in latest_by_config(rows).values():
        if record.status == "ok" and record.source == "measured" and training_memory(record):
            groups.setdefault((record.model, record.precision), []).append(record)
    fits, skipped = [], []
    for (model, precision), records in sorted(groups.items()):
        chosen = None
        for source in (PEAK, PARTS):
            points = [(r.batch * r.seconds, training_memory(r)[source], device_label(r))
                      for r in records if source in training_memory(r)]
            if len({p[0] for p in points}) >= 2:
                chosen = source, points
                break
        if chosen is None:
            skipped.append(f"{model} {precision}: {len(records)} measured row(s) at "
                           f"{len({r.batch * r.seconds for r in records})} batch x seconds value(s); "
                           "a fit needs two or more")
            continue
        source, points = chosen
        xs, ys = [p[0] for p in points], [float(p[1]) for p in points]
        intercept, slope, r2 = linear_fit(xs, ys)
        fits.append(MemoryFit(model, precision, intercept, slope, r2, len(points), min(xs), max(xs), source,
                              "; ".join(sorted({p[2] for p in points}))))
    if not fits:
        raise BadInput(
            "no usable rows: feasibility needs, per model and precision, measured ok rows with memory at two or "
            "more different batch x seconds (e.g. w2vprof sweep --preset lengths)"
        )
    return MemoryFits(fits, skipped)


@dataclass
class FeasibilityRow:
    device: str
    device_class: str
    memory_gb: float
    usable_gb: float  # memory_gb x usable fraction: what training may take
    model: str
    precision: str
    batch: int
    target_seconds: float
    memory_at_target_gb: float  # the fit at batch x target_seconds
    fits: bool  # trains at the target length within usable memory (and the device has the precision)
    max_seconds: Optional[float]  # longest utterance that fits; None: not even the fixed part a fits
    max_seconds_extrapolated: bool  # batch x max_seconds beyond twice the largest measured batch x seconds
    target_extrapolated: bool  # batch x target_seconds beyond twice the largest measured batch x seconds
    r2: float
    measured_batch_seconds: str  # measured range of batch x seconds, e.g. 4-32
    memory_source: str
    note: str


@dataclass
class Feasibility:
    fits: MemoryFits
    rows: list[FeasibilityRow]
    usable_fraction: float
    notes: list[str]


def feasibility(
    fits: MemoryFits, profiles: list[DeviceProfile], usable_fraction: float = 0.7,
    batches: Sequence[int] = (1, 4), target_seconds: float = PAPER_SECONDS, devices: Optional[Sequence[str]] = None,
) -> Feasibility:
    """For each device profile, model, precision and batch: does training fit, and the longest utterance that does."""
    if not 0 < usable_fraction <= 1:
        raise BadInput(f"--usable-fraction must be in (0, 1], got {usable_fraction:g}")
    if devices:
        profiles = [find_profile(profiles, name) for name in devices]
    notes = list(fits.skipped)
    spanning = {f.devices for f in fits.fits if ";" in f.devices}
    if spanning:
        notes.append(f"fits span several measured devices ({' / '.join(sorted(spanning))}); give one device's "
                     "results for a fit of that device alone")
    rows = []
    for profile in profiles:
        if not profile.memory_gb:
            notes.append(f"{profile.name}: no memory size in its profile, skipped")
            continue
        usable = profile.memory_gb * 1e9 * usable_fraction
        for fit in fits.fits:
            limit = 2 * fit.max_batch_seconds
            for batch in batches:
                note = ""
                if fit.precision == "mixed" and not profile.mixed_precision:
                    note = "no mixed precision on this device"
                room = usable - fit.intercept_bytes
                if room <= 0:
                    max_seconds = None
                elif fit.bytes_per_batch_second > 0:
                    max_seconds = room / (fit.bytes_per_batch_second * batch)
                else:
                    max_seconds, note = None, note or "memory did not grow with length in the fit: check the data"
                at_target = fit.memory_bytes(batch, target_seconds)
                rows.append(
                    FeasibilityRow(
                        device=profile.name, device_class=profile.device_class, memory_gb=profile.memory_gb,
                        usable_gb=usable / 1e9, model=fit.model, precision=fit.precision, batch=batch,
                        target_seconds=target_seconds, memory_at_target_gb=at_target / 1e9,
                        fits=at_target <= usable and not note, max_seconds=max_seconds,
                        max_seconds_extrapolated=max_seconds is not None and max_seconds * batch > limit,
                        target_extrapolated=target_seconds * batch > limit, r2=fit.r2,
                        measured_batch_seconds=f"{fit.min_batch_seconds:g}-{fit.max_batch_seconds:g}",
                        memory_source=fit.memory_source, note=note,
                    )
                )
    if not rows:
        raise BadInput("no device profile with a memory size to decide for")
    return Feasibility(fits, rows, usable_fraction, notes)
