"""The paper's Sec. 3.3 / 4.1 arithmetic on measurements: federated training time, hardware forecast,
and which devices can hold which model (feasibility).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from w2vprof.analysis.data import DeviceProfile, device_label, latest_by_config
from w2vprof.errors import BadInput
from w2vprof.records import ResultRecord

__all__ = [
    "FlSetting",
    "FlEstimateRow",
    "fl_estimate",
    "ForecastResult",
    "forecast",
    "MemoryFit",
    "fit_memory",
    "FeasibilityRow",
    "feasibility",
]


def _time(record: ResultRecord) -> Optional[float]:
    return record.sec_per_batch_median if record.sec_per_batch_median is not None else record.sec_per_batch_mean


# -- federated training time ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FlSetting:
    clients: int = 10
    samples_per_client: int = 19_500
    batch: int = 4
    rounds: int = 150
    local_epochs: float = 1.0
    clients_per_round: Optional[int] = None
    model: str = "base"
    precision: str = "fp32"
    seconds: Optional[float] = None  # utterance length of the rows to use (default: any, the most common)
    bandwidth_mbps: Optional[float] = None  # client link, megabits per second, both directions
    model_bytes: Optional[int] = None  # payload of one model copy (default: the rows' param_bytes)


@dataclass
class FlEstimateRow:
    device: str
    model: str
    precision: str
    batch: int
    sec_per_batch: float
    batches_per_epoch: int
    epoch_hours: float
    communication_hours_per_round: Optional[float]
    round_hours: float
    rounds: int
    total_hours: float
    total_days: float
    source: str


def fl_estimate(rows: list[ResultRecord], setting: FlSetting) -> list[FlEstimateRow]:
    """Clients train concurrently, so a round lasts as long as one client's local epochs (plus its transfers)."""
    for name in ("clients", "samples_per_client", "batch", "rounds"):
        if getattr(setting, name) <= 0:
            raise BadInput(f"--{name.replace('_', '-')} must be positive, got {getattr(setting, name)}")
    if setting.local_epochs <= 0:
        raise BadInput(f"--local-epochs must be positive, got {setting.local_epochs}")
    if setting.clients_per_round is not None and not 0 < setting.clients_per_round <= setting.clients:
        raise BadInput(f"--clients-per-round must be between 1 and --clients ({setting.clients})")
    usable = [
        r for r in latest_by_config(rows).values()
        if r.model == setting.model and r.precision == setting.precision and r.batch == setting.batch
        and r.status == "ok" and _time(r) is not None
        and (setting.seconds is None or abs(r.seconds - setting.seconds) < 1e-6)
    ]
    if not usable:
        raise BadInput(
            f"no usable rows: need status ok for model {setting.model}, batch {setting.batch}, "
            f"precision {setting.precision}" + (f", {setting.seconds:g} s" if setting.seconds else "")
        )
    batches = math.ceil(setting.samples_per_client / setting.batch)
    estimates = []
    for record in usable:
        seconds_per_batch = _time(record)
        epoch_s = batches * seconds_per_batch * setting.local_epochs
        communication_h = None
        if setting.bandwidth_mbps:
            payload = setting.model_bytes or record.param_bytes
            if payload:
                # download the global model, upload the update: two copies per round
                communication_h = 2 * payload * 8 / (setting.bandwidth_mbps * 1e6) / 3600
        round_h = epoch_s / 3600 + (communication_h or 0.0)
        total_h = round_h * setting.rounds
        estimates.append(
            FlEstimateRow(
                device=device_label(record), model=record.model, precision=record.precision, batch=record.batch,
                sec_per_batch=seconds_per_batch, batches_per_epoch=batches, epoch_hours=epoch_s / 3600,
                communication_hours_per_round=communication_h, round_hours=round_h, rounds=setting.rounds,
                total_hours=total_h, total_days=total_h / 24, source=record.source,
            )
        )
    return estimates


# -- hardware forecast ----------------------------------------------------------------------------------
@dataclass
class ForecastResult:
    device: str
    target: str
    model: str
    batch: int
    precision: str
    device_sec_per_batch: float
    target_sec_per_batch: float
    ratio: float
    doubling_months: float
    years: float
    from_year: float
    year: float


def forecast(
    rows: list[ResultRecord], device: str, target: str, model: str = "base", batch: int = 4,
    precision: str = "fp32", doubling_months: float = 18.0, from_year: float = 2022.0,
) -> ForecastResult:
    """Years until `device` matches `target`'s seconds per batch if compute doubles every `doubling_months`."""
    if doubling_months <= 0:
        raise BadInput(f"--doubling-months must be positive, got {doubling_months:g}")

    def time_of(name: str) -> float:
        candidates = [
            r for r in latest_by_config(rows).values()
            if device_label(r) == name and r.model == model and r.batch == batch and r.precision == precision
        ]
        if not candidates:
            known = sorted({device_label(r) for r in rows})
            raise BadInput(f"unknown device {name!r} for {model} batch {batch} {precision}; known: {', '.join(known)}")
        ok = [r for r in candidates if r.status == "ok" and _time(r)]
        if not ok:
            raise BadInput(f"{name}: {model} batch {batch} {precision} has no time ({candidates[0].status})")
        return _time(ok[-1])

    device_time, target_time = time_of(device), time_of(target)
    ratio = device_time / target_time
    years = max(math.log2(ratio), 0.0) * doubling_months / 12
    return ForecastResult(device, target, model, batch, precision, device_time, target_time, ratio,
                          doubling_months, years, from_year, from_year + years)


# -- feasibility ----------------------------------------------------------------------------------------
@dataclass
class MemoryFit:
    model: str
    precision: str
    intercept_bytes: float  # a
    bytes_per_batch_second: float  # b: memory per (batch x seconds)
    r2: float
    points: int
    min_batch_seconds: float
    max_batch_seconds: float
    memory_source: str  # peak_mem_bytes | act+param+grad+optim

    def memory_bytes(self, batch: int, seconds: float) -> float:
        return self.intercept_bytes + self.bytes_per_batch_second * batch * seconds


def training_memory(record: ResultRecord) -> tuple[Optional[int], str]:
    """Memory a configuration needs: the measured peak, else the sum of its parts (and which one)."""
    if record.peak_mem_bytes:
        return record.peak_mem_bytes, "peak_mem_bytes"
    parts = (record.act_mem_bytes, record.param_bytes, record.grad_bytes, record.optim_state_bytes)
    if all(p is not None for p in parts):
        return sum(parts), "act+param+grad+optim"
    return None, ""


def fit_memory(rows: list[ResultRecord]) -> list[MemoryFit]:
    """Least squares memory = a + b x (batch x seconds), per model and precision, over measured ok rows."""
    groups: dict[tuple[str, str], list[tuple[float, float, str]]] = {}
    for record in latest_by_config(rows).values():
        memory, source = training_memory(record)
        if record.status == "ok" and record.source == "measured" and memory:
            groups.setdefault((record.model, record.precision), []).append((record.batch * record.seconds, memory, source))
    fits = []
    for (model, precision), points in sorted(groups.items()):
        xs = [p[0] for p in points]
        if len(set(xs)) < 2:
            continue
        ys = [p[1] for p in points]
        n = len(xs)
        mean_x, mean_y = sum(xs) / n, sum(ys) / n
        sxx = sum((x - mean_x) ** 2 for x in xs)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
        intercept = mean_y - slope * mean_x
        ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
        ss_tot = sum((y - mean_y) ** 2 for y in ys)
        r2 = 1 - ss_res / ss_tot if ss_tot else 1.0
        sources = sorted({p[2] for p in points})
        fits.append(MemoryFit(model, precision, intercept, slope, r2, n, min(xs), max(xs), "/".join(sources)))
    if not fits:
        raise BadInput(
            "no usable rows: feasibility needs, per model and precision, measured ok rows at two or more "
            "different batch x seconds"
        )
    return fits


@dataclass
class FeasibilityRow:
    device: str
    memory_gb: float
    usable_gb: float
    model: str
    precision: str
    batch: int
    max_seconds: Optional[float]  # longest utterance that fits (None: not even the fixed cost fits)
    fits_at_seconds: bool  # fits at the target length
    target_seconds: float
    extrapolated: bool  # beyond twice the largest measured batch x seconds
    r2: float
    measured_range: str
    note: str


def feasibility(
    fits: list[MemoryFit], profiles: list[DeviceProfile], usable_fraction: float = 0.7,
    batches: tuple[int, ...] = (1, 4), target_seconds: float = 5.5,
) -> list[FeasibilityRow]:
    if not 0 < usable_fraction <= 1:
        raise BadInput(f"--usable-fraction must be in (0, 1], got {usable_fraction:g}")
    rows = []
    for profile in profiles:
        if not profile.memory_gb:
            continue
        usable = profile.memory_gb * 1e9 * usable_fraction
        for fit in fits:
            for batch in batches:
                note = ""
                if fit.precision == "mixed" and not profile.mixed_precision:
                    note = "no mixed precision on this device"
                room = usable - fit.intercept_bytes
                max_seconds = room / (fit.bytes_per_batch_second * batch) if room > 0 and fit.bytes_per_batch_second > 0 else None
                if room <= 0:
                    max_seconds = None
                extrapolated = max_seconds is not None and max_seconds * batch > 2 * fit.max_batch_seconds
                rows.append(
                    FeasibilityRow(
                        device=profile.name, memory_gb=profile.memory_gb, usable_gb=usable / 1e9, model=fit.model,
                        precision=fit.precision, batch=batch, max_seconds=max_seconds,
                        fits_at_seconds=bool(max_seconds is not None and max_seconds >= target_seconds and not note),
                        target_seconds=target_seconds, extrapolated=extrapolated, r2=fit.r2,
                        measured_range=f"{fit.min_batch_seconds:g}-{fit.max_batch_seconds:g} batch x s",
                        note=note,
                    )
                )
    return rows
