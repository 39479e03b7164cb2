"""The paper's Sec. 3.3 / 4.1 arithmetic on measurements: federated training time, hardware forecast, and
which devices can hold which model (feasibility).

Every function takes result rows (measured, or the paper's) and returns plain dataclasses; nothing here knows a
device's numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

from w2vprof.analysis.data import DeviceProfile, device_label, find_profile, latest_by_config, sec_per_batch
from w2vprof.analysis.fit import linear_fit
from w2vprof.errors import BadInput
from w2vprof.records import ResultRecord

__all__ = [
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

#: The paper's average utterance (CommonVoice Italian): preferred when rows exist at several lengths.
PAPER_SECONDS = 5.5


def _same_seconds(a: float, b: float) -> bool:
    return abs(a - b) < 1e-6


# -- federated training time ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FlSetting:
    clients: int = 10
    samples_per_client: int = 19_500
    batch: int = 4
    rounds: int = 150
    local_epochs: float = 1.0
    clients_per_round: Optional[int] = None  # None: every client trains every round
    model: str = "base"
    precision: str = "fp32"
    seconds: Optional[float] = None  # utterance length of the rows to use (None: every length measured)
    bandwidth_mbps: Optional[float] = None  # client link, megabits per second, each direction
    model_bytes: Optional[int] = None  # one model copy on the wire (default: the row's param_bytes)


@dataclass
class FlEstimateRow:
    device: str
    model: str
    precision: str
    batch: int
    seconds: float  # utterance length of the measurement used
    sec_per_batch: float
    batches_per_epoch: int  # ceil(samples_per_client / batch)
    epoch_hours: float  # one local epoch on one client
    local_epochs: float
    communication_hours_per_round: Optional[float]  # download + upload of one model copy (with --bandwidth)
    round_hours: float  # local_epochs x epoch_hours + communication
    rounds: int
    total_hours: float  # rounds x round_hours: clients train concurrently
    total_days: float
    clients_per_round: int
    rounds_per_client: float  # rounds x clients_per_round / clients: how often one client trains
    device_hours: float  # compute spent by all clients together: rounds x clients_per_round x local training
    source: str


def _check_setting(setting: FlSetting) -> None:
    for name in ("clients", "samples_per_client", "batch", "rounds"):
        if getattr(setting, name) <= 0:
            raise BadInput(f"--{name.replace('_', '-')} must be positive, got {getattr(setting, name)}")
    if not setting.local_epochs > 0:
        raise BadInput(f"--local-epochs must be positive, got {setting.local_epochs:g}")
    if setting.clients_per_round is not None and not 0 < setting.clients_per_round <= setting.clients:
        raise BadInput(
            f"--clients-per-round must be between 1 and --clients ({setting.clients}), got {setting.clients_per_round}"
        )
    if setting.bandwidth_mbps is not None and not setting.bandwidth_mbps > 0:
        raise BadInput(f"--bandwidth must be positive, got {setting.bandwidth_mbps:g}")


def fl_estimate(rows: list[ResultRecord], setting: FlSetting) -> list[FlEstimateRow]:
    """Clients train concurrently, so a round lasts as long as one client's local epochs (plus its transfers).

    One row per device and measured utterance length (filter with `setting.seconds`).
    NB: FedAvg's server-side aggregation is ignored: it is seconds per round against hours of training.
    """
    _check_setting(setting)
    usable = [
        r for r in latest_by_config(rows).values()
        if r.model == setting.model and r.precision == setting.precision and r.batch == setting.batch
        and r.status == "ok" and sec_per_batch(r) is not None
        and (setting.seconds is None or _same_seconds(r.seconds, setting.seconds))
    ]
    if not usable:
        raise BadInput(
            f"no usable rows: need a status ok row for model {setting.model}, batch {setting.batch}, precision "
            f"{setting.precision}" + (f" at {setting.seconds:g} s" if setting.seconds else "")
            + " (give results files or --reference paper)"
        )
    per_round = setting.clients_per_round or setting.clients
    batches = math.ceil(setting.samples_per_client / setting.batch)
    estimates = []
    for record in usable:
        seconds_per_batch = sec_per_batch(record)
        epoch_h = batches * seconds_per_batch / 3600
        training_h = epoch_h * setting.local_epochs
        communication_h = None
        if setting.bandwidth_mbps:
            payload = setting.model_bytes or record.param_bytes
            if payload:
                # download the global model, upload the update: two copies per round, bits over bits/s
                communication_h = 2 * payload * 8 / (setting.bandwidth_mbps * 1e6) / 3600
        round_h = training_h + (communication_h or 0.0)
        total_h = round_h * setting.rounds
        estimates.append(
            FlEstimateRow(
                device=device_label(record), model=record.model, precision=record.precision, batch=record.batch,
                seconds=record.seconds, sec_per_batch=seconds_per_batch, batches_per_epoch=batches,
                epoch_hours=epoch_h, local_epochs=setting.local_epochs, communication_hours_per_round=communication_h,
                round_hours=round_h, rounds=setting.rounds, total_hours=total_h, total_days=total_h / 24,
                clients_per_round=per_round, rounds_per_client=setting.rounds * per_round / setting.clients,
                device_hours=setting.rounds * per_round * training_h, source=record.source,
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
    seconds: float  # utterance length both times were measured at
    device_sec_per_batch: float
    target_sec_per_batch: float
    ratio: float  # device time / target time: the speed-up the device still needs
    doubling_months: float
    years: float  # log2(ratio) x doubling_months / 12 (0 when the device is already as fast)
    from_year: float
    year: float


def forecast(
    rows: list[ResultRecord], device: str, target: str, model: str = "base", batch: int = 4,
    precision: str = "fp32", doubling_months: float = 18.0, from_year: float = 2022.0,
    seconds: Optional[float] = None,
) -> ForecastResult:
    """Years until `device` matches `target`'s seconds per batch if compute doubles every `doubling_months`.

    NB: assumes seconds per batch falls in proportion to compute; memory bandwidth and software are ignored.
    """
    if not doubling_months > 0:
        raise BadInput(f"--doubling-months must be positive, got {doubling_months:g}")
    known = sorted({device_label(r) for r in rows})
    latest = latest_by_config(rows)

    def times(name: str) -> dict[float, float]:
        if name not in known:
            raise BadInput(f"unknown device {name!r}; devices in the data: {', '.join(known)}")
        found = {
            record.seconds: sec_per_batch(record) for key, record in latest.items()
            if key[0] == name and record.model == model and record.batch == batch and record.precision == precision
            and record.status == "ok" and sec_per_batch(record)
            and (seconds is None or _same_seconds(record.seconds, seconds))
        }
        if not found:
            raise BadInput(f"{name}: no measured time for {model}, batch {batch}, {precision}"
                           + (f" at {seconds:g} s" if seconds else ""))
        return found

    device_times, target_times = times(device), times(target)
    common = sorted(set(device_times) & set(target_times))
    if not common:
        raise BadInput(
            f"{device} and {target} share no utterance length for {model}, batch {batch}, {precision} "
            f"({', '.join(f'{s:g}' for s in sorted(device_times))} s vs {', '.join(f'{s:g}' for s in sorted(target_times))} s)"
        )
    length = PAPER_SECONDS if PAPER_SECONDS in common else common[-1]
    ratio = device_times[length] / target_times[length]
    years = max(math.log2(ratio), 0.0) * doubling_months / 12
    return ForecastResult(device, target, model, batch, precision, length, device_times[length],
                          target_times[length], ratio, doubling_months, years, from_year, from_year + years)


# -- feasibility ----------------------------------------------------------------------------------------
PEAK, PARTS = "peak_mem_bytes", "act+param+grad+optim"


def training_memory(record: ResultRecord) -> dict[str, int]:
    """The memory measures a row offers: its measured peak and/or the sum of its parts, by name."""
    found = {}
    if record.peak_mem_bytes:
        found[PEAK] = record.peak_mem_bytes
    parts = (record.act_mem_bytes, record.param_bytes, record.grad_bytes, record.optim_state_bytes)
    if all(p is not None for p in parts):
        found[PARTS] = sum(parts)
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
                           f"{len({r.batch * r.seconds for r in records})} batch x seconds value(s); a fit needs two or more")
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
