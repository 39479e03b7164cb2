"""Feasibility: which devices can hold which model. Memory is fitted as a + b x (batch x seconds) per model and
precision over measured rows, then compared with each device profile's usable memory.

The memory of a row is the figure that answers "does it fit" on the device that measured it (`fit_mem_bytes`; how
each figure is measured: w2vprof.measure.memory): the system-level peak on CPUs and unified-memory boards (Jetson),
where the GPU's allocations come out of the same RAM; the CUDA allocator's reserve at its peak plus the CUDA context
on discrete GPUs; the allocator's peak where a row has nothing better (MPS, files written before schema 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from w2vprof.analysis.data import PRETRAIN_OBJECTIVE, device_label, latest_by_config
from w2vprof.analysis.fit import linear_fit
from w2vprof.devices.profiles import DeviceProfile, find_profile
from w2vprof.errors import BadInput
from w2vprof.paper import PAPER_SECONDS, TABLE2_BATCHES, USABLE_FRACTION, check_usable_fraction
from w2vprof.records import ResultRecord

__all__ = [
    "FIT_PEAK",
    "FIT_RESERVED",
    "FIT_RESERVED_CONTEXT",
    "FIT_SOURCES",
    "FIT_SYSTEM",
    "PARTS",
    "PEAK",
    "Feasibility",
    "FeasibilityRow",
    "MemoryFit",
    "MemoryFits",
    "feasibility",
    "fit_mem_bytes",
    "fit_memory",
    "training_memory",
]

FIT_SYSTEM = "sys_peak_mem_bytes"
FIT_RESERVED_CONTEXT = "peak_mem_reserved_bytes+cuda_context_bytes"
FIT_RESERVED = "peak_mem_reserved_bytes"
FIT_PEAK = "peak_mem_bytes"
#: Every answer fit_mem_bytes can give, best first.
FIT_SOURCES = (FIT_SYSTEM, FIT_RESERVED_CONTEXT, FIT_RESERVED, FIT_PEAK)
PEAK, PARTS = FIT_PEAK, "act+param+grad+optim"


def fit_mem_bytes(record: ResultRecord) -> tuple[Optional[int], str]:
    """(bytes, which figure) answering "does this configuration fit on its device"; (None, '') when the row has
    none.

    - discrete CUDA GPU: the caching allocator's reserve at its peak (what it took from the device: the tensors'
      peak plus the allocator's slack) plus the CUDA context where NVML gave it; the host's RAM is another budget;
    - CPU and unified memory (Jetson): the system-level peak, which holds the GPU's allocations there;
    - MPS, and rows written before schema 2: the allocator's peak.
    """
    unified = record.memory_ceiling_source == "os_available"  # how devices.identify marks Jetson and Apple silicon
    if record.device == "cuda" and not unified:
        if record.peak_mem_reserved_bytes and record.cuda_context_bytes is not None:
            return record.peak_mem_reserved_bytes + record.cuda_context_bytes, FIT_RESERVED_CONTEXT
        if record.peak_mem_reserved_bytes:
            return record.peak_mem_reserved_bytes, FIT_RESERVED
    elif record.device != "mps" and record.sys_peak_mem_bytes:
        return record.sys_peak_mem_bytes, FIT_SYSTEM
    return (record.peak_mem_bytes, FIT_PEAK) if record.peak_mem_bytes else (None, "")


def training_memory(record: ResultRecord) -> dict[str, int]:
    """The memory measures a row offers, by name: its measured figure for "does it fit" (named by which figure it
    is: fit_mem_bytes) and/or the sum of its parts."""
    found = {}
    fit, source = fit_mem_bytes(record)
    if fit:
        found[source] = fit
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


def fit_memory(rows: list[ResultRecord], objective: str = PRETRAIN_OBJECTIVE) -> MemoryFits:
    """Least squares memory = a + b x (batch x seconds), per model and precision, over measured ok rows.

    One measure per fit, never a mix: the first measured figure of FIT_SOURCES (best first: the system-level
    peak, the CUDA reserve plus context, the reserve, the allocator's peak) that at least two batch x seconds have,
    else the sum of activations, parameters, gradients and optimizer state (what `profile` counts without a peak).
    Only rows of `objective` (pretrain or ctc: the model fine-tuned with CTC is another model to fit).
    """
    groups: dict[tuple[str, str], list[ResultRecord]] = {}
    for record in latest_by_config(rows, objective=objective).values():
        if record.status == "ok" and record.source == "measured" and training_memory(record):
            groups.setdefault((record.model, record.precision), []).append(record)
    fits, skipped = [], []
    for (model, precision), records in sorted(groups.items()):
        chosen = None
        for source in (*FIT_SOURCES, PARTS):
            points = [
                (r.batch * r.seconds, training_memory(r)[source], device_label(r))
                for r in records
                if source in training_memory(r)
            ]
            if len({p[0] for p in points}) >= 2:
                chosen = source, points
                break
        if chosen is None:
            skipped.append(
                f"{model} {precision}: {len(records)} measured row(s) at "
                f"{len({r.batch * r.seconds for r in records})} batch x seconds value(s); "
                "a fit needs two or more"
            )
            continue
        source, points = chosen
        xs, ys = [p[0] for p in points], [float(p[1]) for p in points]
        intercept, slope, r2 = linear_fit(xs, ys)
        fits.append(
            MemoryFit(
                model,
                precision,
                intercept,
                slope,
                r2,
                len(points),
                min(xs),
                max(xs),
                source,
                "; ".join(sorted({p[2] for p in points})),
            )
        )
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
    fits: MemoryFits,
    profiles: list[DeviceProfile],
    usable_fraction: float = USABLE_FRACTION,
    batches: Sequence[int] = TABLE2_BATCHES,
    target_seconds: float = PAPER_SECONDS,
    devices: Optional[Sequence[str]] = None,
) -> Feasibility:
    """For each device profile, model, precision and batch: does training fit, and the longest utterance that does."""
    check_usable_fraction(usable_fraction)
    if devices:
        profiles = [find_profile(profiles, name) for name in devices]
    notes = list(fits.skipped) + _spanning_notes(fits)
    rows = []
    for profile in profiles:
        if not profile.memory_gb:
            notes.append(f"{profile.name}: no memory size in its profile, skipped")
            continue
        rows += [
            _feasibility_row(profile, profile.memory_gb, fit, batch, usable_fraction, target_seconds)
            for fit in fits.fits
            for batch in batches
        ]
    if not rows:
        raise BadInput("no device profile with a memory size to decide for")
    return Feasibility(fits, rows, usable_fraction, notes)


def _spanning_notes(fits: MemoryFits) -> list[str]:
    """A note when a fit mixes the rows of several devices (its memory then belongs to none of them alone)."""
    spanning = {f.devices for f in fits.fits if ";" in f.devices}
    if not spanning:
        return []
    return [
        f"fits span several measured devices ({' / '.join(sorted(spanning))}); give one device's "
        "results for a fit of that device alone"
    ]


def _longest_seconds(fit: MemoryFit, batch: int, usable: float) -> tuple[Optional[float], str]:
    """The longest utterance whose memory at `batch` fits in `usable` bytes (None: not even the fixed part a
    fits), and a note when the fit cannot say."""
    room = usable - fit.intercept_bytes
    if room <= 0:
        return None, ""
    if fit.bytes_per_batch_second > 0:
        return room / (fit.bytes_per_batch_second * batch), ""
    return None, "memory did not grow with length in the fit: check the data"


def _feasibility_row(
    profile: DeviceProfile, memory_gb: float, fit: MemoryFit, batch: int, usable_fraction: float, target_seconds: float
) -> FeasibilityRow:
    """One device profile (of `memory_gb`), one fit, one batch: does it fit at `target_seconds`, and up to which
    length."""
    usable = memory_gb * 1e9 * usable_fraction
    note = ""
    if fit.precision == "mixed" and not profile.mixed_precision:
        note = "no mixed precision on this device"
    max_seconds, why_not = _longest_seconds(fit, batch, usable)
    note = note or why_not
    limit = 2 * fit.max_batch_seconds  # beyond twice the largest measured batch x seconds: extrapolated
    at_target = fit.memory_bytes(batch, target_seconds)
    return FeasibilityRow(
        device=profile.name,
        device_class=profile.device_class,
        memory_gb=memory_gb,
        usable_gb=usable / 1e9,
        model=fit.model,
        precision=fit.precision,
        batch=batch,
        target_seconds=target_seconds,
        memory_at_target_gb=at_target / 1e9,
        fits=at_target <= usable and not note,
        max_seconds=max_seconds,
        max_seconds_extrapolated=max_seconds is not None and max_seconds * batch > limit,
        target_extrapolated=target_seconds * batch > limit,
        r2=fit.r2,
        measured_batch_seconds=f"{fit.min_batch_seconds:g}-{fit.max_batch_seconds:g}",
        memory_source=fit.memory_source,
        note=note,
    )
