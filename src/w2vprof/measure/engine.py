"""One training configuration -> one exact record (plus its per-layer rows and raw step times).

`profile_configuration` reads top-down; each step is one function below it:
1. check the settings and resolve the device (bad input is BadInput, naming the setting);
2. start the record: environment, identity, and whether this device can run the precision at all (one small
   training step in that precision: compat.training_problem);
3. prepare the batches: every batch the run uses, on the device before anything is timed (decoding is not
   training);
4. the model: seeded and built (`build_measured_model`; a caller measuring many configurations may build it ahead);
5. the measurement pass: one instrumented, untimed full step (forward, backward, AdamW, zero_grad) under the FLOP
   counter and the saved-tensor tracker; it doubles as the first warmup step;
6. layer rows: per-layer parameters, FLOPs and activation bytes from that pass;
7. warmup: warmup - 1 plain untimed steps, then (float16 with a gradient scaler) up to MAX_EXTRA_WARMUP_STEPS more
   until the loss scale stopped falling and the optimizer holds its state, so no timed step allocates it;
8. timed steps: each timed alone, the device synchronised before and after, nothing else in the loop (no hooks,
   no counters, no memory bookkeeping); peak memory is the high-water mark of exactly these steps (reset before),
   the system-level peak is read around them, and steps the scaler skipped are counted off the clock;
9. the record: counts, peak memory, timing and telemetry fields, by name.
10. after the timed steps, as asked: seconds per layer on extra steps, a trace of one step, the machine's
   calibrated ceilings (w2vprof.measure.diagnostics); a failure there is a warning, never the record's status.
Any failure from 3 on is a record (`oom` or `error`, one line; w2vprof.measure.failures), never a traceback.

Where later work plugs in: a training recipe (checkpointing, freezing, accumulation, optimizer, compile) changes
how the model and its TrainingStep are made (`_make_step`), and every later step runs whatever step it is given;
per-layer timing passes run after `timed_steps`, on the same step and batches, and add their own fields.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

from w2vprof import __version__
from w2vprof.devices.resolve import resolve_device
from w2vprof.errors import BadInput
from w2vprof.measure.failures import classify_exception
from w2vprof.measure.recipes import RecipeUnsupported
from w2vprof.records import LayerRecord, ResultRecord

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.measure.flops import FlopCount
    from w2vprof.measure.layers import LayerSpec
    from w2vprof.measure.memory import PeakReading, SystemPeak
    from w2vprof.measure.recipes import AppliedRecipe, Recipe
    from w2vprof.measure.step import TrainingStep
    from w2vprof.models.pretraining import Wav2Vec2ForPretraining
    from w2vprof.workload import Batch

__all__ = [
    "ADAMW_FLOPS_PER_PARAM",
    "MAX_EXTRA_WARMUP_STEPS",
    "BuiltModel",
    "ProfileConfig",
    "ProfileResult",
    "build_measured_model",
    "check_config",
    "mixed_precision_problem",
    "profile_configuration",
]

#: NB: the optimizer update is elementwise, which FLOP counters do not count. AdamW per parameter element:
#: decay 1, first moment (lerp) 3, second moment 4, denominator (sqrt, divide, add eps) 3, update 3.
ADAMW_FLOPS_PER_PARAM = 14

#: Warm-up steps run beyond the asked ones, at most, while float16's loss scale is still falling (each overflow
#: halves it: 128 reaches 1/8 in 10 steps, where a model that still overflows has diverged).
MAX_EXTRA_WARMUP_STEPS = 10

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
    recipe: str = "default"  # a training recipe's short form (w2vprof.measure.recipes.parse_recipe)
    layer_repeats: int = 0  # extra steps timing each layer after the timed steps (w2vprof.measure.diagnostics)
    trace: Optional[str] = None  # write one step as a Chrome/Perfetto trace to this file
    calibrate: str = "cached"  # the machine's ceilings in the record: off | cached | measure

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ProfileConfig:
        return cls(**json.loads(text))


@dataclass
class ProfileResult:
    record: ResultRecord
    layers: list[LayerRecord] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    layer_timing: dict[str, Any] = field(default_factory=dict)  # rows' sum vs the median step, raw repeats

    def run_json(self, config: ProfileConfig) -> str:
        return json.dumps(
            {
                "config": asdict(config),
                "step_times_s": self.step_times,
                "environment": self.environment,
                "record": asdict(self.record),
                "warnings": self.warnings,
                "layer_timing": self.layer_timing,
            },
            indent=2,
        )


@dataclass
class BuiltModel:
    """A model built for one (model, seed, device), not yet trained, with the RNG state its build left.

    The measurement pass draws masks and negatives from the global RNG, so the measured loss and masked fraction
    (and with them the objective's FLOPs) depend on that state: the engine restores it before measuring, whatever
    the caller did with the RNG in between. A model is measured once (training changes its weights).
    """

    model: Wav2Vec2ForPretraining
    name: str
    seed: int
    device: str
    rng_state: Any  # torch.get_rng_state() right after the build
    used: bool = False

    def claim(self, config: ProfileConfig, device: str) -> None:
        """Check it is this configuration's model and not measured before (a caller's mistake: ValueError)."""
        if (self.name, self.seed, self.device) != (config.model, config.seed, device):
            raise ValueError(
                f"model built for {self.name}/seed {self.seed}/{self.device}, asked for "
                f"{config.model}/seed {config.seed}/{device}"
            )
        if self.used:
            raise ValueError("this model was already measured (its weights have trained): build another")
        self.used = True

    def fresh(self) -> Wav2Vec2ForPretraining:
        """The model, with the global RNG put back where its build left it."""
        import torch

        torch.manual_seed(self.seed)  # every device's generator, as a fresh build would leave them
        torch.set_rng_state(self.rng_state)
        return self.model


def build_measured_model(config: ProfileConfig, device: str) -> BuiltModel:
    """The model a configuration trains: seeded with `config.seed`, built, moved to `device`, in training mode.

    Callers measuring many configurations may build it ahead (e.g. once in a process that forks) and pass it to
    `profile_configuration`; the numbers are the same as for a model built there.
    """
    import torch

    from w2vprof.models import build_model

    torch.manual_seed(config.seed)
    model = build_model(config.model)
    rng_state = torch.get_rng_state()
    return BuiltModel(model.to(device).train(), config.model, config.seed, device, rng_state)


def check_config(config: ProfileConfig) -> str:
    """BadInput naming the setting for anything this configuration cannot be; returns the resolved device."""
    from w2vprof.measure.step import PRECISIONS
    from w2vprof.models import get_config

    get_config(config.model)
    if config.precision not in PRECISIONS:
        raise BadInput(f"unknown precision {config.precision!r}; choose from {', '.join(PRECISIONS)}")
    for name in ("batch", "seconds", "repeats"):
        if not getattr(config, name) > 0:
            raise BadInput(f"{name} must be positive, got {getattr(config, name)!r}")
    _check_diagnostics(config)
    if config.warmup < 0:
        raise BadInput(f"warmup cannot be negative, got {config.warmup!r}")
    _recipe(config).check(config.model, config.batch)
    return resolve_device(config.device)


def _recipe(config: ProfileConfig) -> Recipe:
    from w2vprof.measure.recipes import parse_recipe

    return parse_recipe(config.recipe)


def profile_configuration(config: ProfileConfig, model: Optional[BuiltModel] = None) -> ProfileResult:
    """Measure one configuration. Raises BadInput for bad input; oom, unsupported and any other failure while
    measuring come back as the record's status with one line in `error`.

    `model`: one from `build_measured_model(config, device)`, built ahead by a caller measuring many
    configurations; None builds it here.
    """
    device = check_config(config)
    if model is not None:
        model.claim(config, device)
    result = _start_result(config, device)
    if result.record.status == "unsupported":
        return result
    try:
        _measure(config, device, model, result)
    except BadInput:
        raise
    except RecipeUnsupported as exc:  # this platform cannot run the recipe (compile, an optimizer): not a failure
        result.record = replace(result.record, status="unsupported", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - every failure while measuring is a record, classified in one place
        status, line = classify_exception(exc)
        result.record = replace(result.record, status=status, error=line)
    return result


def _measure(config: ProfileConfig, device: str, built: Optional[BuiltModel], result: ProfileResult) -> None:
    timed_batches, measure_batch = prepare_batches(config, device, result)
    model = (built or build_measured_model(config, device)).fresh()
    layers = _model_layers(model)
    applied = _apply_recipe(model, layers, config)
    step = _make_step(model, device, config, applied.recipe)
    counts = measurement_pass(step, layers, measure_batch)
    result.layers = layer_rows(model, layers, counts, applied)
    compiling = compile_steps(step, layers, [measure_batch, *timed_batches], device) if applied.recipe.compile else None
    warm = warm_up(step, measure_batch, config.warmup - 1)
    # the state the timed steps find (the measurement pass's update may have been skipped for overflow)
    counts = replace(counts, optim_state_bytes=warm.optim_state_bytes)
    timed = timed_steps(step, timed_batches, device, config.telemetry, unified=_unified_memory(result.record))
    result.step_times = timed.times
    result.record = replace(
        result.record,
        **count_fields(counts),
        **peak_fields(timed.peak),
        **system_memory_fields(timed),
        **timing_fields(timed.times, config.batch, counts.train_flops),
        **timed.telemetry,
        **compile_fields(compiling, timed.times),
        notes="; ".join(filter(None, [result.record.notes, warm.note])),
        status="ok",
    )
    _diagnose(config, step, layers, timed_batches, device, result)


def _check_diagnostics(config: ProfileConfig) -> None:
    from w2vprof.errors import SettingError
    from w2vprof.measure.diagnostics import CALIBRATION_MODES

    if config.layer_repeats < 0:
        raise SettingError("layer_repeats", f"cannot be negative, got {config.layer_repeats!r}")
    if config.calibrate not in CALIBRATION_MODES:
        raise SettingError.unknown("calibrate", config.calibrate, CALIBRATION_MODES)


def _diagnose(
    config: ProfileConfig,
    step: TrainingStep,
    layers: list[LayerSpec],
    batches: list[Batch],
    device: str,
    result: ProfileResult,
) -> None:
    """After the timed steps: seconds per layer, the trace, the ceilings (w2vprof.measure.diagnostics)."""
    from w2vprof.measure.diagnostics import run_diagnostics

    found = run_diagnostics(
        step,
        layers,
        batches,
        device,
        result.layers,
        result.step_times,
        layer_repeats=config.layer_repeats,
        trace=config.trace,
        calibrate=config.calibrate,
        identity=result.environment,
    )
    result.layers, result.layer_timing = found.layers, found.layer_timing
    result.warnings.extend(found.warnings)
    notes = "; ".join(filter(None, [result.record.notes, *found.warnings]))
    result.record = replace(result.record, **found.record_fields, notes=notes)


# -- 2. the record's start ---------------------------------------------------------------------------------------
def _start_result(config: ProfileConfig, device: str) -> ProfileResult:
    """Identity and environment, the CPU's bf16 note, and `unsupported` where the device cannot run mixed."""
    import torch

    from w2vprof.devices.cpu import read_native_bf16
    from w2vprof.measure.step import emulated_precision_note

    if config.threads:
        torch.set_num_threads(config.threads)
    env = _environment(device, torch.get_num_threads())
    record = _base_record(config, device, env)
    if device == "cpu":
        record.bf16_native = read_native_bf16()
        if config.precision == "mixed":
            record.notes = emulated_precision_note(device, record.bf16_native)
    if config.precision == "mixed":
        problem = mixed_precision_problem(device)
        if problem:
            record.status, record.error = "unsupported", problem
    return ProfileResult(record=record, environment=env)


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
        **_recipe(config).record_fields(),
        **{k: v for k, v in env.items() if k in known},
    )


def mixed_precision_problem(device: str) -> Optional[str]:
    """Why this device cannot train in mixed precision, or None: one small training step as the measured one runs
    it (autocast in the step's dtype, backward, the gradient scaler's step and update where the step uses one,
    AdamW). A torch without a scaler for the device (torch.amp.GradScaler is 2.3+) or a scaler step that fails
    (MPS on torch 2.5-2.7 converts to float64: pytorch#142397) is `unsupported` with its reason, not an error."""
    from w2vprof.compat import training_problem
    from w2vprof.measure.step import autocast_dtype, uses_grad_scaler

    problem = training_problem(device, autocast_dtype=autocast_dtype(device), scaled=uses_grad_scaler(device))
    return f"mixed precision cannot train on {device}: {problem}" if problem else None


def _unified_memory(record: ResultRecord) -> bool:
    from w2vprof.measure.memory import unified_memory

    return unified_memory(record)


# -- 3. batches --------------------------------------------------------------------------------------------------
def prepare_batches(config: ProfileConfig, device: str, result: ProfileResult) -> tuple[list[Batch], Batch]:
    """(the `repeats` timed batches, the measurement pass's batch), on the device. Records the workload: its
    name, the length statistics of the timed batches (computed on the CPU copies) and any decoding warnings."""
    from w2vprof.workload import length_stats, make_workload

    workload = make_workload(
        config.seconds,
        audio=Path(config.audio) if config.audio else None,
        clips_dir=Path(config.clips_dir) if config.clips_dir else None,
        max_seconds=config.max_seconds,
        length_dist=config.length_dist,
    )
    stream = workload.batches(config.batch, config.seed)
    timed = [next(stream) for _ in range(config.repeats)]
    measure = next(stream)
    lengths: dict[str, Any] = length_stats(timed)
    record = replace(result.record, workload=workload.name, **lengths)
    # after drawing the batches: a file that fails to decode only then joins the workload's warnings
    result.warnings.extend(workload.warnings)
    if workload.warnings:
        record.notes = "; ".join(filter(None, [record.notes, *workload.warnings]))
    if workload.name != "synthetic":
        record.seconds = round(lengths["utt_sec_mean"], 3)
    result.record = record
    return [_on_device(b, device) for b in timed], _on_device(measure, device)


def _on_device(batch: Batch, device: str) -> Batch:
    return type(batch)(batch.waveforms.to(device), batch.lengths.to(device))


# -- 4 and 5. the step and the measurement pass ------------------------------------------------------------------
def _apply_recipe(model: Wav2Vec2ForPretraining, layers: list[LayerSpec], config: ProfileConfig) -> AppliedRecipe:
    """Freeze and checkpoint what the configuration's recipe says (nothing for the default)."""
    from w2vprof.measure.recipes import apply_recipe

    return apply_recipe(model, _recipe(config), layers)


def _make_step(model: Wav2Vec2ForPretraining, device: str, config: ProfileConfig, recipe: Recipe) -> TrainingStep:
    """The training step every later stage runs: the recipe's optimizer (over trainable parameters) and
    micro-batches; the default recipe's is the plain step (AdamW over every parameter)."""
    from w2vprof.measure.recipes import make_optimizer
    from w2vprof.measure.step import TrainingStep

    step = TrainingStep.create(model, device, config.precision)
    if recipe.optimizer != "adamw" or recipe.freeze != "none":
        step = replace(step, optimizer=make_optimizer(model, recipe))
    return replace(step, accumulate=recipe.accumulate) if recipe.accumulate > 1 else step


def _model_layers(model: Wav2Vec2ForPretraining) -> list[LayerSpec]:
    from w2vprof.measure.layers import model_layers

    return model_layers(model)


@dataclass(frozen=True)
class PassCounts:
    """What the instrumented measurement pass found (plain numbers: nothing here keeps the graph alive)."""

    forward: FlopCount  # per module, for the layer rows (every micro-batch's forward)
    fwd_flops: int
    bwd_flops: int  # without the recomputation (recompute_flops)
    bwd_by_layer: dict[str, int]
    act_by_layer: dict[str, int]  # the micro-batch that saved the most (one micro-batch's tensors live at a time)
    param_count: int
    param_bytes: int
    grad_bytes: int
    optim_state_bytes: int
    loss: float
    masked_fraction: float
    recompute_by_layer: dict[str, int] = field(default_factory=dict)  # checkpointed forwards run again
    trainable_params: Optional[int] = None  # None: every parameter
    optim_flops_per_param: int = ADAMW_FLOPS_PER_PARAM

    @property
    def recompute_flops(self) -> int:
        return sum(self.recompute_by_layer.values())

    @property
    def optim_flops(self) -> int:
        trainable = self.param_count if self.trainable_params is None else self.trainable_params
        return self.optim_flops_per_param * trainable

    @property
    def train_flops(self) -> int:
        return self.fwd_flops + self.bwd_flops + self.recompute_flops + self.optim_flops


def measurement_pass(step: TrainingStep, layers: list[LayerSpec], batch: Batch) -> PassCounts:
    """One full training step, untimed: for each micro-batch (one without accumulation) the forward under the FLOP
    counter (per module), the saved-tensor tracker and the backward-node labeler, and the backward under the
    per-layer backward counter; then the update.

    NB: the backward's total is the sum of its per-layer counts: the per-layer counter uses the FLOP counter's
    formulas and sees every backward op, so the two are equal by construction (tests compare them). Counting the
    backward (and the optimizer step, which has no counted FLOPs) a second time under torch's counter would only
    add a Python dispatch per op to the pass, which a sweep pays once per configuration.
    """
    from w2vprof.measure.memory import tensor_bytes
    from w2vprof.measure.recipes import optimizer_flops_per_param

    model = step.model
    passes = [_micro_batch_pass(step, layers, micro) for micro in step.micro_batches(batch)]
    grad_bytes = tensor_bytes(p.grad for p in model.parameters() if p.grad is not None)
    step.update()
    forward = passes[0].forward.plus(*(p.forward for p in passes[1:]))
    bwd_by_layer = _add_up(p.bwd_by_layer for p in passes)
    return PassCounts(
        forward=forward,
        fwd_flops=forward.total,
        bwd_flops=sum(bwd_by_layer.values()),
        bwd_by_layer=bwd_by_layer,
        # saved tensors are freed by their micro-batch's backward: one micro-batch's are alive at a time
        act_by_layer=max((p.act_by_layer for p in passes), key=lambda act: sum(act.values())),
        param_count=sum(p.numel() for p in model.parameters()),
        param_bytes=tensor_bytes(model.parameters()),
        grad_bytes=grad_bytes,
        optim_state_bytes=_optimizer_state_bytes(step.optimizer),
        loss=sum(p.loss for p in passes) / len(passes),
        masked_fraction=sum(p.num_masked for p in passes) / max(sum(p.num_frames for p in passes), 1),
        recompute_by_layer=_add_up(p.recompute_by_layer for p in passes),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        optim_flops_per_param=optimizer_flops_per_param(step.optimizer),
    )


@dataclass(frozen=True)
class _MicroBatchCounts:
    forward: FlopCount
    bwd_by_layer: dict[str, int]
    recompute_by_layer: dict[str, int]
    act_by_layer: dict[str, int]
    loss: float
    num_masked: int
    num_frames: int


def _micro_batch_pass(step: TrainingStep, layers: list[LayerSpec], batch: Batch) -> _MicroBatchCounts:
    """Forward and backward of one micro-batch under the counters (gradients add up in the parameters)."""
    from w2vprof.measure.activations import ActivationTracker
    from w2vprof.measure.attribution import NodeLabeler, backward_flops_by_layer
    from w2vprof.measure.flops import count_flops
    from w2vprof.measure.layers import OBJECTIVE

    tracker = ActivationTracker(step.model, layers)
    labeler = NodeLabeler(step.model, layers)
    with count_flops() as counter:
        with tracker.track(), labeler.track():
            output = step.forward(batch)
        after_forward = counter.snapshot()
    labeler.label_from(output.loss, OBJECTIVE)
    recompute: dict[str, int] = {}
    with backward_flops_by_layer(labeler.labels, recompute) as bwd_by_layer:
        step.backward(output)
    return _MicroBatchCounts(
        after_forward,
        dict(bwd_by_layer),
        recompute,
        dict(tracker.bytes_by_layer),
        float(output.loss.detach()),
        output.num_masked,
        output.num_frames,
    )


def _add_up(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for count in counts:
        for name, value in count.items():
            total[name] = total.get(name, 0) + value
    return total


def _optimizer_state_bytes(optimizer: Any) -> int:
    import torch

    from w2vprof.measure.memory import tensor_bytes

    return tensor_bytes(v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v))


# -- 6. layer rows -----------------------------------------------------------------------------------------------
def layer_rows(
    model: Wav2Vec2ForPretraining, layers: list[LayerSpec], counts: PassCounts, applied: Optional[AppliedRecipe] = None
) -> list[LayerRecord]:
    """One row per layer in forward order; the rows add up to the record's FLOPs and activation bytes.
    `applied`: what the recipe froze and checkpointed (None: nothing)."""
    from w2vprof.measure.summary import flops_per_layer, layer_params

    fwd_by_layer = flops_per_layer(counts.forward, type(model).__name__, layers)
    rows, cumulative = [], 0
    for layer in layers:
        act = counts.act_by_layer.get(layer.name, 0)
        cumulative += act
        rows.append(
            LayerRecord(
                layer=layer.name,
                kind=layer.kind,
                params=layer_params(model, layer),
                fwd_flops=fwd_by_layer[layer.name],
                bwd_flops=counts.bwd_by_layer.get(layer.name, 0),
                act_mem_bytes=act,
                cum_act_mem_bytes=cumulative,
                recompute_flops=counts.recompute_by_layer.get(layer.name, 0),
                trainable=applied is None or layer.name not in applied.frozen,
                checkpointed=applied is not None and layer.name in applied.checkpointed,
            )
        )
    return rows


# -- 7 and 8. warmup and timed steps -----------------------------------------------------------------------------
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


def warm_up(step: TrainingStep, batch: Batch, steps: int, max_extra: int = MAX_EXTRA_WARMUP_STEPS) -> WarmUp:
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


def compile_steps(step: TrainingStep, layers: list[LayerSpec], batches: list[Batch], device: str) -> list[float]:
    """torch.compile the step's model's layers, then one step on each distinct batch shape (in order), each timed:
    compilation (and a recompilation for a new shape) happens here, never in the timed steps.

    RecipeUnsupported with the reason where this platform cannot compile; running out of memory stays `oom`.
    """
    from w2vprof.measure.recipes import compile_model

    compile_model(step.model, layers)
    times: list[float] = []
    shapes: set[tuple[int, ...]] = set()
    for batch in batches:
        shape = tuple(batch.waveforms.shape)
        if shape in shapes:
            continue
        shapes.add(shape)
        try:
            times.append(_timed_step(step, batch, device, _NoSampling()))
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
    step: TrainingStep, batches: list[Batch], device: str, telemetry: bool, unified: bool = False
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
        times.append(_timed_step(step, batch, device, memory))
        skipped += scale.fell()  # off the clock
    fields = sampler.stop(steps=len(times)) if sampler is not None else {}
    context = cuda_context_bytes() if device == "cuda" and not unified else None
    return TimedSteps(times, memory.read(), dict(fields), system.stop(), skipped, context)


def _timed_step(step: TrainingStep, batch: Batch, device: str, memory: Any) -> float:
    synchronize(device)
    start = time.perf_counter()
    step(batch)
    synchronize(device)
    elapsed = time.perf_counter() - start
    memory.sample()  # after the clock stopped (MPS has no peak API, so its memory is sampled)
    return elapsed


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def _telemetry_sampler(device: str) -> Any:
    from w2vprof.devices.telemetry import TelemetrySampler

    return TelemetrySampler(torch_device=device)


# -- 9. the record's measured fields -----------------------------------------------------------------------------
def count_fields(counts: PassCounts) -> dict[str, Any]:
    return {
        "loss": counts.loss,
        "masked_fraction": counts.masked_fraction,
        "param_bytes": counts.param_bytes,
        "grad_bytes": counts.grad_bytes,
        "optim_state_bytes": counts.optim_state_bytes,
        "fwd_flops": counts.fwd_flops,
        "bwd_flops": counts.bwd_flops,
        "optim_flops": counts.optim_flops,
        "train_flops": counts.train_flops,
        "flops_source": _flops_source(counts.optim_flops_per_param),
        "act_mem_bytes": sum(counts.act_by_layer.values()),
        "recompute_flops": counts.recompute_flops,
        "trainable_params": counts.trainable_params,
    }


def _flops_source(optim_flops_per_param: int) -> str:
    if optim_flops_per_param == ADAMW_FLOPS_PER_PARAM:
        return FLOPS_SOURCE
    return FLOPS_SOURCE.replace("14/param AdamW", f"{optim_flops_per_param}/param (docs/recipes.md)")


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
