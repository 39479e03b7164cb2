"""One training configuration -> one exact record (plus its per-layer rows and raw step times).

Order of work, and why:
1. Build the model and the batches (batches go to the device before any timing: decoding is not training).
2. One instrumented, untimed measurement pass (a full step: forward, backward, AdamW, zero_grad) under the FLOP
   counter and the saved-tensor tracker. It doubles as the first warmup step.
3. warmup - 1 plain untimed steps.
4. `repeats` timed steps: each timed alone, with the device synchronised before and after, and nothing else
   in the loop (no hooks, no counters, no memory bookkeeping). Peak memory is the high-water mark of exactly
   these steps (reset before them).
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from w2vprof import __version__
from w2vprof.errors import BadInput
from w2vprof.records import LayerRecord, ResultRecord

__all__ = ["ProfileConfig", "ProfileResult", "resolve_device", "profile_configuration", "ADAMW_FLOPS_PER_PARAM"]

#: NB: the optimizer update is elementwise, which FLOP counters do not count. AdamW per parameter element:
#: decay 1, first moment (lerp) 3, second moment 4, denominator (sqrt, divide, add eps) 3, update 3.
ADAMW_FLOPS_PER_PARAM = 14

FLOPS_SOURCE = "torch.utils.flop_counter (fwd, bwd; CPU attention formula added); optim estimated: 14/param AdamW"


@dataclass
class ProfileConfig:
    model: str = "base"
    batch: int = 4
    seconds: float = 5.5
    precision: str = "fp32"
    device: str = "auto"
    threads: Optional[int] = None
    warmup: int = 1
    repeats: int = 5
    seed: int = 0
    audio: Optional[str] = None
    clips_dir: Optional[str] = None
    max_seconds: Optional[float] = None
    length_dist: Optional[str] = None
    telemetry: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ProfileConfig":
        return cls(**json.loads(text))


@dataclass
class ProfileResult:
    record: ResultRecord
    layers: list[LayerRecord] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def run_json(self, config: ProfileConfig) -> str:
        return json.dumps(
            {
                "config": asdict(config),
                "step_times_s": self.step_times,
                "environment": self.environment,
                "record": asdict(self.record),
                "warnings": self.warnings,
            },
            indent=2,
        )


def resolve_device(requested: str) -> str:
    """auto -> cuda, else mps, else cpu. Asking for a device this machine lacks is bad input."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda: no CUDA device is available on this machine")
    if requested == "mps" and not has_mps:
        raise BadInput("--device mps: Apple MPS is not available on this machine")
    if requested not in ("cpu", "cuda", "mps"):
        raise BadInput(f"unknown --device {requested!r}; choose from auto, cpu, cuda, mps")
    return requested


def _synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def _environment(device: str, threads: int) -> dict[str, Any]:
    import torch
    import torchaudio

    from w2vprof.devices import identify

    env = dict(identify(device))
    env.update(
        threads=threads,
        torch_version=torch.__version__,
        torchaudio_version=torchaudio.__version__,
        w2vprof_version=__version__,
        python_version=platform.python_version(),
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return env


def _base_record(config: ProfileConfig, device: str, env: dict[str, Any]) -> ResultRecord:
    known = set(ResultRecord.__dataclass_fields__)
    return ResultRecord(
        model=config.model,
        batch=config.batch,
        seconds=config.seconds,
        precision=config.precision,
        device=device,
        repeats=config.repeats,
        warmup=config.warmup,
        seed=config.seed,
        **{k: v for k, v in env.items() if k in known},
    )


def _mixed_precision_problem(device: str) -> Optional[str]:
    """Why this device cannot train in mixed precision, or None."""
    import torch

    try:
        with torch.autocast(device_type=device, dtype=torch.bfloat16 if device == "cpu" else torch.float16):
            a = torch.ones(4, 4, device=device)
            (a @ a).sum().item()
    except Exception as exc:  # noqa: BLE001 - any failure here means "unsupported", recorded as such
        return f"autocast unsupported on {device}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return None


def profile_configuration(config: ProfileConfig) -> ProfileResult:
    """Measure one configuration. Raises BadInput for bad input; OOM/unsupported are returned as records."""
    import torch

    from w2vprof.devices.cpu import read_native_bf16
    from w2vprof.measure.step import PRECISIONS
    from w2vprof.models import get_config

    get_config(config.model)
    if config.precision not in PRECISIONS:
        raise BadInput(f"unknown --precision {config.precision!r}; choose from {', '.join(PRECISIONS)}")
    if config.batch <= 0 or config.seconds <= 0 or config.repeats <= 0 or config.warmup < 0:
        raise BadInput("--batch, --seconds and --repeats must be positive and --warmup not negative")
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    env = _environment(device, torch.get_num_threads())
    record = _base_record(config, device, env)
    result = ProfileResult(record=record, environment=env)
    if device == "cpu":
        record.bf16_native = read_native_bf16()
        if config.precision == "mixed" and not record.bf16_native:
            record.notes = "CPU has no native bfloat16: autocast bf16 is emulated (often slower than fp32)"

    if config.precision == "mixed":
        problem = _mixed_precision_problem(device)
        if problem:
            record.status, record.error = "unsupported", problem
            return result

    try:
        _measure(config, device, result)
    except BadInput:
        raise
    except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
        _mark_failed(record, "oom", exc)
    except RuntimeError as exc:
        # MPS and some older CUDA builds raise plain RuntimeErrors for OOM.
        _mark_failed(record, "oom" if "out of memory" in str(exc).lower() else "error", exc)
    return result


def _mark_failed(record: ResultRecord, status: str, exc: BaseException) -> None:
    text = str(exc).strip().splitlines()
    record.status = status
    record.error = f"{type(exc).__name__}: {text[-1] if text else ''}".strip()


def _measure(config: ProfileConfig, device: str, result: ProfileResult) -> None:
    import torch

    from w2vprof.measure.activations import ActivationTracker
    from w2vprof.measure.attribution import NodeLabeler, backward_flops_by_layer
    from w2vprof.measure.layers import OBJECTIVE
    from w2vprof.measure.flops import count_flops
    from w2vprof.measure.layers import model_layers
    from w2vprof.measure.memory import reset_rss_peak, rss_peak_bytes, tensor_bytes
    from w2vprof.measure.stats import time_stats
    from w2vprof.measure.step import TrainingStep
    from w2vprof.measure.summary import flops_per_layer, layer_params
    from w2vprof.models import build_model
    from w2vprof.workload import length_stats, make_workload

    record = result.record
    torch.manual_seed(config.seed)
    workload = make_workload(
        config.seconds,
        audio=Path(config.audio) if config.audio else None,
        clips_dir=Path(config.clips_dir) if config.clips_dir else None,
        max_seconds=config.max_seconds,
        length_dist=config.length_dist,
    )
    record.workload = workload.name
    stream = workload.batches(config.batch, config.seed)
    # Every batch the run uses, on the device before anything is timed.
    timed_batches = [next(stream) for _ in range(config.repeats)]
    measure_batch = next(stream)
    to_device = lambda b: type(b)(b.waveforms.to(device), b.lengths.to(device))  # noqa: E731
    timed_batches = [to_device(b) for b in timed_batches]
    measure_batch = to_device(measure_batch)
    # after drawing the batches: a file that fails to decode only then joins the workload's warning
    result.warnings.extend(workload.warnings)
    if workload.warnings:
        record.notes = "; ".join(filter(None, [record.notes, *workload.warnings]))
    record.__dict__.update(length_stats(timed_batches))
    if workload.name != "synthetic":
        record.seconds = round(record.utt_sec_mean, 3)

    model = build_model(config.model).to(device).train()
    step = TrainingStep.create(model, device, config.precision)
    layers = model_layers(model)
    prefix = type(model).__name__

    # -- measurement pass (untimed; counts as the first warmup step) ----------------------------------
    tracker = ActivationTracker(model, layers)
    labeler = NodeLabeler(model, layers)
    with count_flops() as counter:
        with tracker.track(), labeler.track():
            output = step.forward(measure_batch)
        labeler.label_from(output.loss, OBJECTIVE)
        after_forward = counter.snapshot()
        with backward_flops_by_layer(labeler.labels) as bwd_by_layer:
            step.backward(output)
        after_backward = counter.snapshot()
        grad_bytes = tensor_bytes(p.grad for p in model.parameters() if p.grad is not None)
        step.update()
    backward_count = after_backward.minus(after_forward)
    record.loss = float(output.loss.detach())
    record.masked_fraction = output.num_masked / max(output.num_frames, 1)
    del output

    param_count = sum(p.numel() for p in model.parameters())
    record.param_bytes = tensor_bytes(model.parameters())
    record.grad_bytes = grad_bytes
    record.optim_state_bytes = tensor_bytes(
        value for state in step.optimizer.state.values() for value in state.values() if torch.is_tensor(value)
    )
    record.fwd_flops = after_forward.total
    record.bwd_flops = backward_count.total
    record.optim_flops = ADAMW_FLOPS_PER_PARAM * param_count
    record.train_flops = record.fwd_flops + record.bwd_flops + record.optim_flops
    record.flops_source = FLOPS_SOURCE
    record.act_mem_bytes = tracker.total_bytes

    fwd_by_layer = flops_per_layer(after_forward, prefix, layers)
    del labeler
    cumulative = 0
    for layer in layers:
        act = tracker.bytes_by_layer.get(layer.name, 0)
        cumulative += act
        result.layers.append(
            LayerRecord(
                layer=layer.name,
                kind=layer.kind,
                params=layer_params(model, layer),
                fwd_flops=fwd_by_layer[layer.name],
                bwd_flops=bwd_by_layer.get(layer.name, 0),
                act_mem_bytes=act,
                cum_act_mem_bytes=cumulative,
            )
        )

    for _ in range(max(config.warmup - 1, 0)):
        step(measure_batch)

    # -- timed steps --------------------------------------------------------------------------------
    sampler = _telemetry_sampler(device) if config.telemetry else None
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        peak_source = "cuda_max_allocated"
    elif device == "mps":
        peak_source = "mps_driver_sampled_after_each_step"
    else:
        peak_source = "rss_hwm" if reset_rss_peak() else "rss_hwm_since_process_start"
    mps_peak = 0
    times: list[float] = []
    _synchronize(device)
    if sampler is not None:
        sampler.start()
    for batch in timed_batches:
        _synchronize(device)
        start = time.perf_counter()
        step(batch)
        _synchronize(device)
        times.append(time.perf_counter() - start)
        if device == "mps":  # after the clock stopped: MPS has no peak API, so sample
            mps_peak = max(mps_peak, int(torch.mps.driver_allocated_memory()))
    if sampler is not None:
        record.__dict__.update(sampler.stop(steps=len(times)))

    if device == "cuda":
        record.peak_mem_bytes = int(torch.cuda.max_memory_allocated())
        record.peak_mem_reserved_bytes = int(torch.cuda.max_memory_reserved())
    elif device == "mps":
        record.peak_mem_bytes = mps_peak
    else:
        record.peak_mem_bytes = rss_peak_bytes()
    record.peak_mem_source = peak_source

    stats = time_stats(times)
    result.step_times = times
    record.sec_per_batch_median = stats["median"]
    record.sec_per_batch_mean = stats["mean"]
    record.sec_per_batch_std = stats["std"]
    record.sec_per_batch_min = stats["min"]
    record.sec_per_batch_max = stats["max"]
    record.sec_per_batch_iqr = stats["iqr"]
    record.sec_per_sequence = stats["median"] / config.batch
    record.achieved_flops_per_sec = record.train_flops / stats["median"]
    record.status = "ok"


def _telemetry_sampler(device: str):
    from w2vprof.devices.telemetry import TelemetrySampler

    return TelemetrySampler(torch_device=device)
