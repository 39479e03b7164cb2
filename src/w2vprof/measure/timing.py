"""Timing: the warm-up, compiling steps, and the bare timed steps, plus the record's timing and memory fields.

Each timed step is the training step run bare (`step(batch)`: w2vprof.measure.step, no hooks), timed alone with the
device synchronised before and after it; nothing else runs in the loop (no counters, no memory bookkeeping: peak
memory is read after the clock stops). Peak memory is the high-water mark of exactly these steps (reset before),
the system-level peak is read around them, and steps the gradient scaler skipped are counted off the clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence

from w2vprof.devices.sync import synchronize
from w2vprof.measure.failures import classify_exception
from w2vprof.measure.recipes import RecipeUnsupported

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.measure.memory import PeakReading, SystemPeak
    from w2vprof.measure.step import StepInput, TrainingStep
    from w2vprof.models.layers import LayerSpec

__all__ = [
    "MAX_EXTRA_WARMUP_STEPS",
    "LossScaleWatch",
    "TimedSteps",
    "WarmUp",
    "compile_fields",
    "compile_steps",
    "peak_fields",
    "system_memory_fields",
    "time_one_step",
    "timed_steps",
    "timing_fields",
    "warm_up",
]

#: Warm-up steps run beyond the asked ones, at most, while float16's loss scale is still falling (each overflow
#: halves it: 128 reaches 1/8 in 10 steps, where a model that still overflows has diverged).
MAX_EXTRA_WARMUP_STEPS = 10


class LossScaleWatch:
    """Whether the gradient scaler skipped the last optimizer step: a skipped step (a gradient overflowed in
    float16) halves the loss scale, and nothing else lowers it. Reads the scale from the device: off the clock."""

    def __init__(self, step: TrainingStep) -> None:
        self.step = step
        self.scale = step.loss_scale()

    def fell(self) -> bool:
        """Whether the scale fell since the last reading (always False without a scaler)."""
        before, self.scale = self.scale, self.step.loss_scale()
        return before is not None and self.scale is not None and self.scale < before


@dataclass(frozen=True)
class WarmUp:
    """What the warm-up left for the timed steps."""

    extra_steps: int  # run beyond the asked ones while the loss scale was still falling
    optim_state_bytes: int  # the optimizer's state as the timed steps find it
    note: str  # for the record's notes ('' when warm-up ran as asked)


def warm_up(step: TrainingStep, batch: StepInput, steps: int, max_extra: int = MAX_EXTRA_WARMUP_STEPS) -> WarmUp:
    """`steps` untimed steps; then, with a gradient scaler, up to `max_extra` more while the last one was skipped
    for overflow (its loss scale fell) or, before any, while the optimizer holds no state (the measurement pass's
    update was skipped). Where every one overflowed, AdamW's state is allocated as its first real step would, so
    no timed step allocates it."""
    from w2vprof.measure.step import allocate_optimizer_state, optimizer_state_bytes

    watch = LossScaleWatch(step)
    skipped: Optional[bool] = None  # None: no step watched yet
    for _ in range(max(steps, 0)):
        step(batch)
        skipped = watch.fell()
    extra = 0
    while step.scaler is not None and extra < max_extra and (skipped or (skipped is None and not step.optimizer.state)):
        step(batch)
        skipped, extra = watch.fell(), extra + 1
    if not skipped:
        note = f"warm-up ran {extra} extra step(s) until the loss scale stopped falling" if extra else ""
    else:
        note = f"float16 overflow: the loss scale was still falling after {extra} extra warm-up step(s)"
        if not step.optimizer.state and allocate_optimizer_state(step.optimizer):
            note += "; no update happened, so the optimizer state was allocated before timing"
    return WarmUp(extra, optimizer_state_bytes(step.optimizer), note)


class _NoSampling:
    def sample(self) -> None:
        """Compiling steps are no part of the peak memory of the timed steps."""


def compile_steps(
    step: TrainingStep, layers: list[LayerSpec], batches: Sequence[StepInput], device: str
) -> list[float]:
    """torch.compile the step's model's layers, then one step on each distinct batch shape (in order), each timed:
    compilation (and a recompilation for a new shape) happens here, never in the timed steps.

    RecipeUnsupported with the reason where this platform cannot compile; running out of memory stays `oom`.
    """
    from w2vprof.measure.recipes import compile_model
    from w2vprof.measure.step import batch_of

    compile_model(step.model, layers)
    times: list[float] = []
    shapes: set[tuple[int, ...]] = set()
    for batch in batches:
        shape = tuple(batch_of(batch).waveforms.shape)
        if shape in shapes:
            continue
        shapes.add(shape)
        try:
            times.append(time_one_step(step, batch, device, _NoSampling()))
        except Exception as exc:  # compilation fails in many ways; each says why in one line
            status, line = classify_exception(exc)
            if status == "oom":
                raise
            raise RecipeUnsupported(f"torch.compile failed here: {line}") from None
    return times


@dataclass(frozen=True)
class TimedSteps:
    times: list[float]  # seconds, one per timed step
    peak: PeakReading
    telemetry: dict[str, Any]  # the record's telemetry fields; empty without telemetry
    system: Optional[SystemPeak] = None  # the system-level peak of these steps
    skipped_steps: int = 0  # optimizer steps the gradient scaler skipped for overflow
    cuda_context_bytes: Optional[int] = None  # discrete GPU: the process's device memory outside torch's reserve


def timed_steps(
    step: TrainingStep, batches: Sequence[StepInput], device: str, telemetry: bool, unified: bool = False
) -> TimedSteps:
    """Each batch once, each step timed alone; peak memory reset before the first and read after the last, the
    system-level peak read around them (`unified`: the GPU allocates from the system's RAM), skipped optimizer
    steps counted between them."""
    from w2vprof.measure.memory import StepPeakMemory, SystemPeakMemory, cuda_context_bytes

    sampler = _telemetry_sampler(device) if telemetry else None
    memory = StepPeakMemory(device)
    system = SystemPeakMemory(device, unified)
    scale = LossScaleWatch(step)
    memory.reset()
    synchronize(device)
    system.start()
    if sampler is not None:
        sampler.start()
    times, skipped = [], 0
    for batch in batches:
        times.append(time_one_step(step, batch, device, memory))
        skipped += scale.fell()  # off the clock
    fields = sampler.stop(steps=len(times)) if sampler is not None else {}
    context = cuda_context_bytes() if device == "cuda" and not unified else None
    return TimedSteps(times, memory.read(), dict(fields), system.stop(), skipped, context)


def time_one_step(step: TrainingStep, batch: StepInput, device: str, memory: Any) -> float:
    """Seconds of one bare step, the device synchronised before and after; then `memory.sample()`, off the clock
    (MPS has no peak API, so its memory is sampled)."""
    synchronize(device)
    start = time.perf_counter()
    step(batch)
    synchronize(device)
    elapsed = time.perf_counter() - start
    memory.sample()
    return elapsed


def _telemetry_sampler(device: str) -> Any:
    from w2vprof.devices.telemetry import TelemetrySampler

    return TelemetrySampler(torch_device=device)


# -- the record's timing and memory fields ------------------------------------------------------------------------
def system_memory_fields(timed: TimedSteps) -> dict[str, Any]:
    return {
        "sys_peak_mem_bytes": timed.system.bytes if timed.system is not None else None,
        "sys_peak_mem_source": timed.system.source if timed.system is not None else "",
        "cuda_context_bytes": timed.cuda_context_bytes,
        "skipped_steps": timed.skipped_steps,
    }


def peak_fields(peak: PeakReading) -> dict[str, Any]:
    return {
        "peak_mem_bytes": peak.peak_bytes,
        "peak_mem_reserved_bytes": peak.reserved_bytes,
        "peak_mem_source": peak.source,
    }


def compile_fields(compiling: Optional[list[float]], times: list[float]) -> dict[str, Any]:
    """compile_sec: the compiling steps' wall time beyond as many median timed steps (nothing without compile)."""
    if compiling is None:
        return {}
    from statistics import median

    return {"compile_sec": max(sum(compiling) - len(compiling) * median(times), 0.0)}


def timing_fields(times: list[float], batch: int, train_flops: int) -> dict[str, Any]:
    from w2vprof.measure.stats import time_stats

    stats = time_stats(times)
    return {
        "sec_per_batch_median": stats["median"],
        "sec_per_batch_mean": stats["mean"],
        "sec_per_batch_std": stats["std"],
        "sec_per_batch_min": stats["min"],
        "sec_per_batch_max": stats["max"],
        "sec_per_batch_iqr": stats["iqr"],
        "sec_per_sequence": stats["median"] / batch,
        "achieved_flops_per_sec": train_flops / stats["median"],
    }
