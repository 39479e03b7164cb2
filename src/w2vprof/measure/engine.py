"""One training configuration -> one exact record (plus its per-layer rows and raw step times).

`profile_configuration` reads top-down; each step is one function here or in the module named:
1. check the settings and resolve the device (bad input is BadInput, naming the setting);
2. start the record: environment, identity, and whether this device can run the precision at all (one small
   training step in that precision: compat.training_problem);
3. prepare the batches: every batch the run uses, on the device before anything is timed (decoding is not
   training);
4. the model: seeded and built by its family (`build_measured_model`; a caller measuring many configurations may
   build it ahead), the recipe applied and the training step made (`make_step`; w2vprof.measure.step);
5. the counting pass (w2vprof.measure.counting): the training step once, untimed, with the FLOP counter, the
   saved-tensor tracker and the backward attribution attached to its phases; it doubles as the first warmup step;
6. layer rows: per-layer parameters, FLOPs and activation bytes from that pass (counting.layer_rows);
7. warmup (w2vprof.measure.timing): warmup - 1 plain untimed steps, then (float16 with a gradient scaler) up to
   MAX_EXTRA_WARMUP_STEPS more until the loss scale stopped falling and the optimizer holds its state, so no timed
   step allocates it;
8. timed steps (timing.timed_steps): the training step bare, each timed alone, the device synchronised before and
   after, nothing else in the loop; peak memory of exactly these steps, the system-level peak around them, steps
   the scaler skipped counted off the clock;
9. the record: counts, peak memory, timing and telemetry fields, by name;
10. after the timed steps, as asked: seconds per layer on extra steps, a trace of one step, the machine's
   calibrated ceilings (w2vprof.measure.diagnostics); a failure there is a warning, never the record's status.
Any failure from 3 on is a record (`oom` or `error`, one line; w2vprof.measure.failures), never a traceback.

Where later work plugs in: a model family (w2vprof.models.family) builds the model and gives its batch, loss and
layers; a training recipe changes how the model and its step are made (`make_step`), and every later stage runs
whatever step it is given; passes after `timed_steps` run on the same step and batches and add their own fields.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from w2vprof import __version__
from w2vprof.devices.resolve import resolve_device
from w2vprof.errors import BadInput
from w2vprof.measure.counting import count_fields, layer_rows, measurement_pass
from w2vprof.measure.failures import classify_exception
from w2vprof.measure.recipes import RecipeUnsupported
from w2vprof.measure.timing import (
    compile_fields,
    compile_steps,
    peak_fields,
    system_memory_fields,
    timed_steps,
    timing_fields,
    warm_up,
)
from w2vprof.models.family import CTC, ModelOptions
from w2vprof.models.registry import get_family
from w2vprof.records import PRECISIONS, LayerRecord, ResultRecord

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from w2vprof.measure.recipes import AppliedRecipe, Recipe
    from w2vprof.measure.step import StepBatch, StepInput, TrainingStep
    from w2vprof.models.layers import LayerSpec
    from w2vprof.workload import Batch

__all__ = [
    "BuiltModel",
    "ProfileConfig",
    "ProfileResult",
    "build_identity",
    "build_measured_model",
    "model_options",
    "check_config",
    "make_step",
    "prepare_targets",
    "mixed_precision_problem",
    "prepare_batches",
    "profile_configuration",
]


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
    objective: str = "pretrain"  # what the step trains: pretrain | ctc (w2vprof.models.family.OBJECTIVES)
    vocab: int = 32  # ctc: output classes, the blank included (w2vprof.models.family.ModelOptions)
    clusters: Optional[int] = None  # HuBERT/WavLM pretraining: cluster classes; None: the model's own default

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

    model: nn.Module
    name: str
    seed: int
    device: str
    rng_state: Any  # torch.get_rng_state() right after the build
    used: bool = False
    identity: str = ""  # build_identity(config): the model, its objective and that objective's options

    def claim(self, config: ProfileConfig, device: str) -> None:
        """Check it is this configuration's model and not measured before (a caller's mistake: ValueError)."""
        built = (self.name, self.seed, self.device, self.identity)
        if built != (config.model, config.seed, device, build_identity(config)):
            raise ValueError(
                f"model built for {self.name}/seed {self.seed}/{self.device} ({self.identity}), asked for "
                f"{config.model}/seed {config.seed}/{device} ({build_identity(config)})"
            )
        if self.used:
            raise ValueError("this model was already measured (its weights have trained): build another")
        self.used = True

    def fresh(self) -> nn.Module:
        """The model, with the global RNG put back where its build left it."""
        import torch

        torch.manual_seed(self.seed)  # every device's generator, as a fresh build would leave them
        torch.set_rng_state(self.rng_state)
        return self.model


def build_measured_model(config: ProfileConfig, device: str) -> BuiltModel:
    """The model a configuration trains: seeded with `config.seed`, built by its family, moved to `device`, in
    training mode.

    Callers measuring many configurations may build it ahead (e.g. once in a process that forks) and pass it to
    `profile_configuration`; the numbers are the same as for a model built there.
    """
    import torch

    torch.manual_seed(config.seed)
    model = get_family(config.model).build(config.objective, model_options(config))
    rng_state = torch.get_rng_state()
    return BuiltModel(
        model.to(device).train(), config.model, config.seed, device, rng_state, identity=build_identity(config)
    )


def model_options(config: ProfileConfig) -> ModelOptions:
    """The configuration's model options, checked (SettingError naming `vocab` or `clusters`)."""
    from w2vprof.models.family import make_options

    return make_options(config.clusters, config.vocab)


def build_identity(config: ProfileConfig) -> str:
    """What a built model depends on besides its seed and device: the model, its objective and that objective's
    options (a model built ahead is only measured for a configuration of the same identity)."""
    if config.objective == CTC:
        return f"{config.model}/{config.objective}/vocab={config.vocab}"
    clusters = f"/clusters={config.clusters}" if config.clusters is not None else ""
    return f"{config.model}/{config.objective}{clusters}"


def check_config(config: ProfileConfig) -> str:
    """BadInput naming the setting for anything this configuration cannot be; returns the resolved device."""
    family = get_family(config.model)  # an unknown model: BadInput listing the known ones
    family.check_objective(config.objective)
    model_options(config)
    if config.precision not in PRECISIONS:
        raise BadInput(f"unknown precision {config.precision!r}; choose from {', '.join(PRECISIONS)}")
    for name in ("batch", "seconds", "repeats"):
        if not getattr(config, name) > 0:
            raise BadInput(f"{name} must be positive, got {getattr(config, name)!r}")
    _check_diagnostics(config)
    if config.warmup < 0:
        raise BadInput(f"warmup cannot be negative, got {config.warmup!r}")
    _recipe(config).check(config.model, config.batch)
    _recipe(config).check_trains(family, config.objective, model_options(config))
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
    batches, extra = prepare_batches(config, device, result)
    model = (built or build_measured_model(config, device)).fresh()
    step, layers, applied = make_step(model, device, config)
    # every batch's targets (cluster ids, transcripts; none for wav2vec 2.0) made now, off the clock
    timed_batches, measure_batch = prepare_targets(step, batches, extra, config.seed)
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
    batches: Sequence[StepInput],
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
        objective=config.objective,
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


# -- 4 and 5. the step ---------------------------------------------------------------------------------------------
def make_step(
    model: nn.Module, device: str, config: ProfileConfig
) -> tuple[TrainingStep, list[LayerSpec], AppliedRecipe]:
    """The training step every later stage runs, with the model's layers and what the recipe did: the recipe's
    freezing and checkpointing applied to the model, then its optimizer (over trainable parameters) and
    micro-batches; the default recipe's is the plain step (AdamW over every parameter)."""
    from w2vprof.measure.recipes import apply_recipe
    from w2vprof.measure.step import TrainingStep

    family = get_family(config.model)
    layers = family.layers(model)
    applied = apply_recipe(model, _recipe(config), layers)
    return TrainingStep.create(model, device, config.precision, applied.recipe, family), layers, applied


def prepare_targets(
    step: TrainingStep, timed: list[Batch], measure: Batch, seed: int
) -> tuple[list[StepBatch], StepBatch]:
    """The batches cut into the step's micro-batches, each with its family's targets, drawn from a generator of
    their own seeded with `seed` (the global RNG, which masks and negatives draw from, is left as it was)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return [step.prepare(batch, generator) for batch in timed], step.prepare(measure, generator)
