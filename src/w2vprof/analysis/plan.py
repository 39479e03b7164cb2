"""`w2vprof plan`: which training recipes let a model train on a device, from measured rows of each recipe.

Per recipe (the `recipe` column), over its measured ok rows of the model and precision, two least-squares fits in
the input size, as `feasibility` fits the default's memory:
    cost = a + b x + c x s,   x = batch x seconds, s = seconds
`b x` is the work and the tensors that grow with the audio (convolutions, linear layers); `c x s` is what grows
with its square (attention scores: batch x frames^2). The `c` term is fitted only from four rows at three lengths
or more, and dropped where it comes out negative (noise); otherwise cost = a + b x. Memory is each row's measured
memory (feasibility's figure: what the row's device reported at its peak) where two sizes have it, else the sum of
activations, parameters, gradients and optimizer state (one measure per fit, as feasibility). A recipe fits when
its predicted memory at the target is within the usable memory.

Seconds per batch are the fit's, on the device that measured the rows; for a device in the paper's Table 2 they are
instead the device's Table 2 time (the default step, same model, batch and precision, 5.5 s) times this recipe's
measured ratio (the recipe's fitted time at the target over the default's at 5.5 s), and each row says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple, Union

from w2vprof.analysis.data import PRETRAIN_OBJECTIVE, device_label, latest_by_config, paper_results, sec_per_batch
from w2vprof.analysis.feasibility import PARTS, training_memory
from w2vprof.devices.profiles import DeviceProfile
from w2vprof.errors import BadInput
from w2vprof.paper import PAPER_SECONDS, USABLE_FRACTION, check_usable_fraction
from w2vprof.records import DEFAULT_RECIPE, ResultRecord, length_key, recipe_of

__all__ = ["CostFit", "Plan", "PlanRow", "PlanTarget", "fit_cost", "plan_recipes", "target_for"]

Point = Tuple[int, float, float]  # (batch, seconds, measured cost)


@dataclass(frozen=True)
class CostFit:
    """cost = a + b x + c x s (c = 0 for the straight line), x = batch x seconds, over `points` measured rows."""

    a: float
    b: float
    c: float
    r2: float
    points: int
    max_batch_seconds: float

    def at(self, batch: int, seconds: float) -> float:
        x = batch * seconds
        return self.a + self.b * x + self.c * x * seconds

    def describe(self, scale: float, unit: str) -> str:
        text = f"{self.a / scale:.3g} + {self.b / scale:.3g} x" + (f" + {self.c / scale:.3g} x s" if self.c else "")
        return f"{text} {unit} (R² {self.r2:.3f}, n {self.points})"


def fit_cost(points: Sequence[Point], square: bool = True) -> Optional[CostFit]:
    """Least squares over (batch, seconds, cost) points; None with fewer than two batch x seconds values.

    `square`: allow the c x s term (used only with four points at three lengths or more, and never negative)."""
    import numpy as np

    xs = [b * s for b, s, _ in points]
    if len(set(xs)) < 2:
        return None
    square = square and len(points) >= 4 and len({length_key(s) for _, s, _ in points}) >= 3
    design = np.array([[1.0, b * s, b * s * s] if square else [1.0, b * s] for b, s, _ in points])
    ys = np.array([y for _, _, y in points], dtype=float)
    coefficients = np.linalg.lstsq(design, ys, rcond=None)[0]
    if square and coefficients[2] < 0:  # a square term cannot shrink the cost: noise, so the straight line
        return fit_cost(points, square=False)
    residual = float(((ys - design @ coefficients) ** 2).sum())
    total = float(((ys - ys.mean()) ** 2).sum())
    a, b, c = [float(v) for v in coefficients] + ([] if square else [0.0])
    return CostFit(a, b, c, 1 - residual / total if total else 1.0, len(points), max(xs))


@dataclass(frozen=True)
class PlanTarget:
    """Where the model must train: the device and its usable memory, the model and the input."""

    device: str
    memory_gb: float  # GB = 1e9 bytes
    usable_fraction: float
    model: str
    batch: int
    seconds: float
    precision: str = "fp32"
    mixed_precision: bool = True  # the device can train in mixed precision
    objective: str = PRETRAIN_OBJECTIVE  # pretrain or ctc: only rows measured with this objective are fitted

    @property
    def usable_bytes(self) -> float:
        return self.memory_gb * 1e9 * self.usable_fraction


def target_for(
    profiles: list[DeviceProfile],
    device: Optional[str],
    memory_bytes: Optional[int],
    model: str,
    batch: int,
    seconds: float,
    usable_fraction: float = USABLE_FRACTION,
    precision: str = "fp32",
    objective: str = PRETRAIN_OBJECTIVE,
) -> PlanTarget:
    """The target from a shipped (or given) device profile, or from `memory_bytes` (which wins over the profile's).

    BadInput for an unknown device without `memory_bytes`; SettingError for a usable fraction outside (0, 1]."""
    check_usable_fraction(usable_fraction)
    profile = next((p for p in profiles if p.name == device), None)
    if memory_bytes is not None:
        memory_gb = memory_bytes / 1e9
    elif profile is None:
        known = ", ".join(p.name for p in profiles)
        raise BadInput(
            f"unknown device {device!r} and no memory size given; known devices: {known}"
            if device
            else "give a device (one of the profiles) or a memory size"
        )
    elif not profile.memory_gb:
        raise BadInput(f"device {profile.name!r} has no memory size in its profile; give one")
    else:
        memory_gb = profile.memory_gb
    name = device or f"{memory_gb:g} GB"
    mixed = profile.mixed_precision if profile is not None else True
    return PlanTarget(name, memory_gb, usable_fraction, model, batch, seconds, precision, mixed, objective)


@dataclass
class PlanRow:
    device: str
    usable_gb: float
    model: str
    precision: str
    batch: int
    seconds: float
    recipe: str
    fits: bool
    peak_mem_gb: float  # predicted memory at the target
    over_gb: float  # predicted memory beyond the usable memory (0 when it fits)
    sec_per_batch: Optional[float]  # predicted; None where no time could be given
    time_basis: str  # where the time comes from
    extrapolated: bool  # the target's batch x seconds is beyond twice the largest measured
    memory_fit: str
    time_fit: str
    measured_rows: str  # the rows the predictions rest on: batch x seconds, and the devices
    note: str = ""


@dataclass
class Plan:
    target: PlanTarget
    rows: list[PlanRow]  # fitting recipes fastest first, then the others by memory
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        t = self.target
        fitting = [r for r in self.rows if r.fits]
        model = t.model if t.objective == PRETRAIN_OBJECTIVE else f"{t.model} ({t.objective})"
        what = f"{model} at batch {t.batch}, {t.seconds:g} s ({t.precision}) on {t.device}"
        usable = f"{t.usable_bytes / 1e9:.2f} GB usable"
        if fitting:
            best = fitting[0]
            if best.sec_per_batch is None:  # no time for any: they are in order of memory
                first = f"least memory: {best.recipe} ({best.peak_mem_gb:.2f} GB; no time)"
            else:
                first = f"fastest: {best.recipe} ({best.peak_mem_gb:.2f} GB, {best.sec_per_batch:.3g} s per batch)"
            return f"{len(fitting)} of {len(self.rows)} recipes fit {what} ({usable}); {first}."
        if not self.rows:
            return f"No recipe could be predicted for {what}."
        closest = min(self.rows, key=lambda r: r.peak_mem_gb)
        return (
            f"Nothing fits: no measured recipe trains {what} in {usable}. Closest: {closest.recipe} at "
            f"{closest.peak_mem_gb:.2f} GB, {closest.over_gb:.2f} GB over."
        )


def plan_recipes(rows: Sequence[ResultRecord], target: PlanTarget) -> Plan:
    """Every recipe with enough measured rows of the target's model and precision, predicted at the target."""
    groups: dict[str, list[ResultRecord]] = {}
    for record in latest_by_config(rows, recipes=True, objective=target.objective).values():
        if (
            record.status == "ok"
            and record.source == "measured"
            and record.model == target.model
            and record.precision == target.precision
        ):
            groups.setdefault(recipe_of(record), []).append(record)
    if not groups:
        objective = "" if target.objective == PRETRAIN_OBJECTIVE else f" {target.objective}"
        raise BadInput(
            f"no measured ok rows of {target.model}{objective} {target.precision} in the results given "
            f"(e.g. w2vprof sweep --preset recipes --seconds 1,2,4,{PAPER_SECONDS:g})"
        )
    notes: list[str] = []
    if target.precision == "mixed" and not target.mixed_precision:
        notes.append(f"{target.device} has no mixed precision: these recipes cannot run there as measured")
    default_time = _time_fit(groups.get(DEFAULT_RECIPE, []))
    table2 = _table2_time(target)
    predicted = []
    for recipe, records in sorted(groups.items()):
        row = _predict(recipe, records, target, default_time, table2)
        if isinstance(row, str):
            notes.append(row)
        else:
            predicted.append(row)
    predicted.sort(
        key=lambda r: (
            not r.fits,
            r.sec_per_batch if r.fits and r.sec_per_batch is not None else float("inf"),
            r.peak_mem_gb,
        )
    )
    devices = {device_label(r) for records in groups.values() for r in records}
    if len(devices) > 1:
        notes.append(
            f"the rows come from several devices ({', '.join(sorted(devices))}): give one device's "
            "results for predictions of that device alone"
        )
    return Plan(target, predicted, notes)


def _memory_points(records: list[ResultRecord]) -> tuple[list[Point], str]:
    """One memory measure for all points: each row's measured memory (the figure feasibility fits: what the row's
    device reports at its peak) where two sizes have it, else the sum of the parts; and the measure's name."""
    measured = [(r, {k: v for k, v in training_memory(r).items() if k != PARTS}) for r in records]
    points = [(r.batch, r.seconds, float(next(iter(found.values())))) for r, found in measured if found]
    if len({b * s for b, s, _ in points}) >= 2:
        return points, "/".join(sorted({name for _, found in measured for name in found}))
    points = [(r.batch, r.seconds, float(training_memory(r)[PARTS])) for r in records if PARTS in training_memory(r)]
    return (points, PARTS) if len({b * s for b, s, _ in points}) >= 2 else ([], "")


def _time_fit(records: list[ResultRecord]) -> Optional[CostFit]:
    return fit_cost([(r.batch, r.seconds, t) for r in records if (t := sec_per_batch(r)) is not None])


Table2Time = Optional[Tuple[Optional[float], str]]  # None: not a Table 2 device; else (time or None, why not)


def _table2_time(target: PlanTarget) -> Table2Time:
    """The paper's seconds per batch of the default step on the target device (same model, batch, precision)."""
    rows = [r for r in paper_results() if device_label(r) == target.device]
    if not rows or target.objective != PRETRAIN_OBJECTIVE:  # the paper measured pretraining only
        return None
    for record in rows:
        if (record.model, record.batch, record.precision) == (
            target.model,
            target.batch,
            target.precision,
        ) and length_key(record.seconds) == PAPER_SECONDS:
            time = sec_per_batch(record) if record.status == "ok" else None
            return (time, "") if time is not None else (None, f"Table 2 has {record.status} there")
    return None, f"Table 2 has no {target.model} {target.precision} row at batch {target.batch}"


def _predict(
    recipe: str, records: list[ResultRecord], target: PlanTarget, default_time: Optional[CostFit], table2: Table2Time
) -> Union[PlanRow, str]:
    """One recipe's row, or why it has none (a note)."""
    points, source = _memory_points(records)
    memory = fit_cost(points)
    if memory is None:
        sizes = sorted({r.batch * r.seconds for r in records})
        return (
            f"{recipe}: measured at {len(sizes)} batch x seconds value(s) ({', '.join(f'{x:g}' for x in sizes)});"
            " a prediction needs two or more"
        )
    time_fit = _time_fit(records)
    peak = memory.at(target.batch, target.seconds)
    time, basis = _time(time_fit, target, default_time, table2, records)
    x = target.batch * target.seconds
    return PlanRow(
        device=target.device,
        usable_gb=target.usable_bytes / 1e9,
        model=target.model,
        precision=target.precision,
        batch=target.batch,
        seconds=target.seconds,
        recipe=recipe,
        fits=peak <= target.usable_bytes,
        peak_mem_gb=peak / 1e9,
        over_gb=max(peak - target.usable_bytes, 0.0) / 1e9,
        sec_per_batch=time,
        time_basis=basis,
        extrapolated=x > 2 * memory.max_batch_seconds,
        memory_fit=f"{memory.describe(1e9, 'GB')} {source}",
        time_fit=time_fit.describe(1, "s") if time_fit else "",
        measured_rows=_measured(records),
    )


def _time(
    fit: Optional[CostFit],
    target: PlanTarget,
    default_time: Optional[CostFit],
    table2: Table2Time,
    records: list[ResultRecord],
) -> tuple[Optional[float], str]:
    """Seconds per batch at the target and where they come from."""
    if fit is None:
        return None, "no time: fewer than two measured sizes with a time"
    here = fit.at(target.batch, target.seconds)
    measured_on = ", ".join(sorted({device_label(r) for r in records}))
    if table2 is None:
        return here, f"fitted on {measured_on}"
    paper_time, why = table2
    if paper_time is None:
        return None, f"no time: {why} (default step, batch {target.batch}, {PAPER_SECONDS:g} s)"
    default_here = default_time.at(target.batch, PAPER_SECONDS) if default_time is not None else 0.0
    if default_here <= 0:
        return None, "no time: scaling Table 2 needs measured default rows at two sizes or more"
    ratio = here / default_here
    return paper_time * ratio, (
        f"Table 2 {paper_time:.3g} s (default, batch {target.batch}, {PAPER_SECONDS:g} s) x {ratio:.2f} (this recipe "
        f"at {target.seconds:g} s over the default at {PAPER_SECONDS:g} s, measured on {measured_on})"
    )


def _measured(records: list[ResultRecord]) -> str:
    by_batch: dict[int, list[float]] = {}
    for r in records:
        by_batch.setdefault(r.batch, []).append(r.seconds)
    return "; ".join(
        f"batch {b}: " + ", ".join(f"{s:g}" for s in sorted(set(ss))) + " s" for b, ss in sorted(by_batch.items())
    )
