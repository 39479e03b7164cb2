"""What runs after the headline timed steps, on the same training step and batches (issue 14).

- seconds per layer (`layer_repeats` > 0): w2vprof.measure.layer_timing on extra training steps, put into the
  layer rows (`fwd_sec`, `bwd_sec`, `sec`, FLOP/s, `time_share`, `io_bytes`) plus an `other` row (kind `other`:
  optimizer step, zero_grad, the autograd engine's start and end) so the rows add up to the step;
- a Chrome/Perfetto trace of one step (`trace`): w2vprof.measure.trace, after the timed steps (the model is warm);
- the machine's measured ceilings (`calibrate`): w2vprof.devices.calibrate's record fields, from the cache only
  (`cached`), measured when the cache has none (`measure`), or not at all (`off`). Calibration runs last so its
  few seconds of full load never heat the device before the steps that are measured.

The headline measurement is already in the record when these run, so none of them can lose it: a failure here
(running out of memory in an extra step, an unwritable trace file) is a warning and a note, never the record's
status.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from w2vprof.measure.failures import classify_exception
from w2vprof.records import LayerRecord

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.measure.layer_timing import LayerTiming
    from w2vprof.measure.step import StepInput, TrainingStep
    from w2vprof.models.layers import LayerSpec

__all__ = [
    "CALIBRATION_MODES",
    "OTHER_KIND",
    "Diagnostics",
    "run_diagnostics",
    "rows_with_times",
    "timing_summary",
    "ceiling_fields",
    "time_summary_line",
]

#: off - no calibration; cached - the cached one, if any (costs nothing); measure - the cached one, else measured now.
CALIBRATION_MODES = ("off", "cached", "measure")
#: kind of the layers.csv row holding the rest of the step
OTHER_KIND = "other"


@dataclass
class Diagnostics:
    """What the passes after the timed steps found; the engine puts it into its result."""

    layers: list[LayerRecord]  # the layer rows, with seconds where measured
    record_fields: dict[str, Any] = field(default_factory=dict)  # ceilings for the result record
    layer_timing: dict[str, Any] = field(default_factory=dict)  # for run.json: rows' sum vs the median step
    warnings: list[str] = field(default_factory=list)


def run_diagnostics(
    step: TrainingStep,
    specs: list[LayerSpec],
    batches: Sequence[StepInput],
    device: str,
    layers: list[LayerRecord],
    step_times: list[float],
    *,
    layer_repeats: int = 0,
    trace: Optional[str] = None,
    calibrate: str = "cached",
    identity: Optional[dict[str, Any]] = None,
) -> Diagnostics:
    """Seconds per layer, the trace and the ceilings, as asked; see the module's notes."""
    found = Diagnostics(layers=list(layers))
    if layer_repeats > 0:
        _time_layers(found, step, specs, batches, device, layer_repeats, step_times)
    if trace:
        _trace(found, step, specs, batches[0], Path(trace))
    fields, warning = ceiling_fields(device, calibrate, identity)
    found.record_fields.update(fields)
    if warning:
        found.warnings.append(warning)
    return found


def _time_layers(
    found: Diagnostics,
    step: TrainingStep,
    specs: list[LayerSpec],
    batches: Sequence[StepInput],
    device: str,
    repeats: int,
    step_times: list[float],
) -> None:
    from w2vprof.measure.layer_timing import time_layers, with_flop_rates

    try:
        timing = time_layers(step, specs, batches, device, repeats)
    except Exception as exc:  # noqa: BLE001 - the headline numbers stand; the layer times are missing, and why
        found.warnings.append(f"seconds per layer not measured: {classify_exception(exc)[1]}")
        return
    timing = with_flop_rates(
        timing, {row.layer: row.fwd_flops for row in found.layers}, {row.layer: row.bwd_flops for row in found.layers}
    )
    found.layers = rows_with_times(found.layers, timing)
    found.layer_timing = timing_summary(timing, step_times)


def rows_with_times(rows: list[LayerRecord], timing: LayerTiming) -> list[LayerRecord]:
    """The layer rows with their seconds, FLOP/s, shares and io bytes, then the `other` row: the rows' `sec`
    add up to the step as the timing tells it (LayerTiming.step_sec)."""
    from w2vprof.measure.layer_timing import OTHER

    timed = {row.layer: row for row in timing.rows}
    result = []
    for row in rows:
        time = timed.get(row.layer)
        if time is None:  # a layer the timing does not know: left without times
            result.append(row)
            continue
        result.append(
            replace(
                row,
                fwd_sec=time.fwd_sec,
                bwd_sec=time.bwd_sec,
                sec=time.sec,
                fwd_flops_per_sec=time.fwd_flops_per_sec,
                bwd_flops_per_sec=time.bwd_flops_per_sec,
                time_share=time.time_share,
                io_bytes=time.io_bytes,
            )
        )
    other = timed[OTHER]
    result.append(
        LayerRecord(
            layer=OTHER,
            kind=OTHER_KIND,
            cum_act_mem_bytes=rows[-1].cum_act_mem_bytes if rows else 0,
            sec=other.sec,
            time_share=other.time_share,
        )
    )
    return result


def timing_summary(timing: LayerTiming, step_times: list[float]) -> dict[str, Any]:
    """run.json's account of the layer times: the rows' sum next to the headline median step (both numbers and
    their ratio), the instrumented steps' own median, and every repeat's raw seconds."""
    median_step = statistics.median(step_times) if step_times else None
    return {
        "repeats": timing.repeats,
        "rows_sum_sec": timing.step_sec,
        "median_step_sec": median_step,
        "rows_sum_over_median_step": timing.step_sec / median_step if median_step else None,
        "instrumented_median_step_sec": timing.median_step_sec,
        "instrumented_wall_sec": timing.wall_sec,
        "samples_s": timing.samples,
    }


def _trace(found: Diagnostics, step: TrainingStep, specs: list[LayerSpec], batch: StepInput, path: Path) -> None:
    from w2vprof.errors import W2vprofError
    from w2vprof.measure.trace import trace_step

    try:
        trace_step(step, batch, specs, path)
    except W2vprofError as exc:  # the file could not be written: the measurement stands
        found.warnings.append(f"trace not written: {exc}")
    except Exception as exc:  # noqa: BLE001 - a profiler failure loses the trace only
        found.warnings.append(f"trace not written: {classify_exception(exc)[1]}")


def ceiling_fields(
    device: str, mode: str, identity: Optional[dict[str, Any]] = None
) -> tuple[dict[str, Optional[float]], str]:
    """(the record's ceiling fields, a warning or ""): from the cached calibration (`cached`), or measured when the
    cache has none (`measure`); nothing for `off` or when no calibration is cached."""
    if mode == "off":
        return {}, ""
    from w2vprof.devices.calibrate import cached_calibration, load_or_calibrate

    try:
        if mode == "cached":
            calibration = cached_calibration(device, identity=identity)
        else:
            calibration = load_or_calibrate(device, identity=identity)
    except Exception as exc:  # noqa: BLE001 - the ceilings are extra: the measurement stands without them
        return {}, f"calibration failed: {classify_exception(exc)[1]}"
    if calibration is None:
        return {}, ""
    return calibration.record_fields(), ""


def time_summary_line(record: Any, layers: list[LayerRecord], top: int = 3) -> str:
    """One line for `profile`'s output: the layers taking the most time, and the step's share of the measured
    matmul peak ("" when the layers have no times)."""
    timed = [row for row in layers if row.sec is not None]
    if not timed:
        return ""
    slowest = sorted(timed, key=lambda row: row.sec or 0.0, reverse=True)[:top]
    text = "Most time per step: " + ", ".join(f"{row.layer} {100 * (row.time_share or 0.0):.0f} %" for row in slowest)
    peak = record.peak_flops_mixed_measured if record.precision == "mixed" else record.peak_flops_fp32_measured
    if peak and record.achieved_flops_per_sec:
        share = record.achieved_flops_per_sec / peak
        text += f"; the step reaches {100 * share:.0f} % of the measured matmul peak"
        if share > 1:  # a ceiling below what a whole step achieves was measured low (under load, or throttled)
            text += " (above it: the calibration understates this machine; `w2vprof devices --calibrate --refresh`)"
    return text
