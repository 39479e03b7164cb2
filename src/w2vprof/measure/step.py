"""The training step, written once: forward (the model family's forward and loss), backward, optimizer step,
zero_grad, the family's after-update schedule.

`TrainingStep.run(batch, hooks)` is the only place the step is written out. The timed steps run it bare
(`step(batch)`: hooks that do nothing, so no hook, counter or bookkeeping runs in a timed step); the counting pass
(w2vprof.measure.counting), seconds per layer (w2vprof.measure.layer_timing) and the trace (w2vprof.measure.trace)
run the same code with their `StepHooks`: context managers around the whole step, each micro-batch's forward and
backward, and the update. What is model-specific (building it, its batch and targets, its loss, its per-layer map)
comes from its family (w2vprof.models.family), never from here.

Mixed precision per device kind (`MIXED_PRECISION`): bfloat16 on CPU (float32's exponent range: no loss scaling),
float16 with a gradient scaler on CUDA and MPS. The scaler starts at fairseq's fp16 initial loss scale, 128
(`LOSS_SCALE_INIT`), not torch's 65536: a scale that overflows skips the optimizer step and halves itself, so a
high start wastes the first steps (and, in a measurement, would leave AdamW's state unallocated).
A training recipe (w2vprof.measure.recipes) sets the optimizer and the micro-batches (`TrainingStep.create`);
its freezing and checkpointing change the model before the step is made.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from w2vprof.measure.recipes import Recipe
    from w2vprof.models.family import LossOutput, ModelFamily
    from w2vprof.workload import Batch

    #: What a step runs on: a batch, or one prepared with its targets.
    StepInput = Union[Batch, "StepBatch"]

__all__ = [
    "BARE",
    "LOSS_SCALE_INIT",
    "MIXED_PRECISION",
    "MixedPrecision",
    "StepBatch",
    "StepHooks",
    "TrainingStep",
    "batch_of",
    "family_of_model",
    "allocate_optimizer_state",
    "autocast_dtype",
    "emulated_precision_note",
    "optimizer_state_bytes",
    "uses_grad_scaler",
]

#: fairseq's --fp16-init-scale default: the gradient scaler's first loss scale.
LOSS_SCALE_INIT = 128.0


@dataclass(frozen=True)
class MixedPrecision:
    """How one device kind trains in mixed precision."""

    dtype_name: str  # the torch dtype autocast computes in
    scaled: bool  # float16 needs loss scaling (a gradient scaler); bfloat16 has float32's range


MIXED_PRECISION = {
    "cpu": MixedPrecision("bfloat16", scaled=False),
    "cuda": MixedPrecision("float16", scaled=True),
    "mps": MixedPrecision("float16", scaled=True),
}


def autocast_dtype(device_kind: str) -> torch.dtype:
    """Mixed precision: float16 (with a gradient scaler) on CUDA and MPS, bfloat16 on CPU."""
    import torch

    dtype: torch.dtype = getattr(torch, MIXED_PRECISION[device_kind].dtype_name)
    return dtype


def emulated_precision_note(device_kind: str, native_bf16: bool) -> str:
    """The caveat for a mixed-precision run on this device kind, naming the dtype that really ran: bfloat16
    autocast on a CPU without native bfloat16 is emulated (often slower than fp32); float16 or native bfloat16
    needs no note ('')."""
    if device_kind != "cpu" or native_bf16 or MIXED_PRECISION["cpu"].dtype_name != "bfloat16":
        return ""
    return "CPU has no native bfloat16: autocast bfloat16 is emulated (often slower than fp32)"


def uses_grad_scaler(device_kind: str) -> bool:
    """Whether mixed precision on this device kind scales the loss (float16) through a gradient scaler."""
    return MIXED_PRECISION[device_kind].scaled


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor the optimizer keeps per parameter (AdamW: two moments and a step count)."""
    import torch

    from w2vprof.measure.memory import tensor_bytes

    return tensor_bytes(v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v))


def allocate_optimizer_state(optimizer: torch.optim.Optimizer) -> int:
    """Give every trainable parameter AdamW state that has none yet, as AdamW's first real step would (zero
    moments, step 0); returns how many parameters got state.

    Used when every warm-up step was skipped for overflow: the state then exists before the timed steps, so no
    timed step pays for its allocation. A zero state is exactly what AdamW itself starts from, so the numbers of
    the steps that follow are unchanged. Other optimizers are left as they are (0).
    """
    import torch

    if not isinstance(optimizer, torch.optim.AdamW):
        return 0
    allocated = 0
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state[param]
            if not param.requires_grad or state:
                continue
            state["step"] = torch.tensor(0.0)  # as AdamW keeps it (not capturable, not fused): a CPU scalar
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            if group.get("amsgrad"):
                state["max_exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            allocated += 1
    return allocated


#: One reusable context manager that does nothing: every phase of a bare step.
_NOTHING: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()


@dataclass(frozen=True)
class StepBatch:
    """A batch as the step runs it: cut into its micro-batches, each with the targets its family's loss needs
    (cluster ids, transcripts; None for wav2vec 2.0), made before anything is timed (`TrainingStep.prepare`)."""

    batch: Batch
    parts: tuple[tuple[Batch, Any], ...]  # (micro-batch, its targets), one per micro-batch


class StepHooks:
    """What watches a training step: each method returns a context manager around one phase of `TrainingStep.run`.

    `step` encloses the whole step; `forward` one micro-batch's forward and loss (the family's `loss`, under
    autocast); `backward` that micro-batch's backward (it gets the family's LossOutput: the micro-batch's whole loss,
    before its share under accumulation and the loss scale); `update` the optimizer step, zero_grad and the family's
    after-update. This class watches nothing: its phases cost one no-op `with` each (the bare step)."""

    def step(self, batch: Batch) -> contextlib.AbstractContextManager[Any]:
        return _NOTHING

    def forward(self, batch: Batch) -> contextlib.AbstractContextManager[Any]:
        return _NOTHING

    def backward(self, forward: LossOutput) -> contextlib.AbstractContextManager[Any]:
        return _NOTHING

    def update(self) -> contextlib.AbstractContextManager[Any]:
        return _NOTHING


#: The bare step's hooks.
BARE = StepHooks()


@dataclass
class TrainingStep:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    device_kind: str  # cpu | cuda | mps
    family: ModelFamily  # the model's (w2vprof.models.family): its targets, loss and after-update
    precision: str = "fp32"
    scaler: Optional[Any] = None
    accumulate: int = 1  # micro-batches per optimizer step (gradient accumulation; a training recipe)

    @classmethod
    def create(
        cls,
        model: nn.Module,
        device_kind: str,
        precision: str,
        recipe: Optional[Recipe] = None,
        family: Optional[ModelFamily] = None,
    ) -> TrainingStep:
        """The step for `model` (already on the device, with the recipe's freezing and checkpointing applied):
        the recipe's optimizer over the trainable parameters (AdamW by default: every parameter) and its
        micro-batches, a gradient scaler where mixed precision scales the loss. `family`: by default a built-in
        model's own (family_of_model)."""
        from w2vprof import compat
        from w2vprof.measure.recipes import DEFAULT, make_optimizer

        recipe = recipe if recipe is not None else DEFAULT
        family = family if family is not None else family_of_model(model)
        scaler = None
        if precision == "mixed" and uses_grad_scaler(device_kind):
            scaler = compat.grad_scaler(device_kind, init_scale=LOSS_SCALE_INIT)
        optimizer = make_optimizer(model, recipe, family.optimizer_settings(model))
        return cls(model, optimizer, device_kind, family, precision, scaler, recipe.accumulate)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.precision != "mixed":
            return _NOTHING
        return torch.autocast(device_type=self.device_kind, dtype=autocast_dtype(self.device_kind))

    def loss_scale(self) -> Optional[float]:
        """The gradient scaler's current loss scale (None without one). Reads it from the device: never call it
        inside a timed step."""
        return float(self.scaler.get_scale()) if self.scaler is not None else None

    def micro_batches(self, batch: Batch) -> list[Batch]:
        """The batch as `accumulate` equal micro-batches, each keeping the batch's padded length ([batch] for 1)."""
        if self.accumulate == 1:
            return [batch]
        pieces = zip(batch.waveforms.chunk(self.accumulate), batch.lengths.chunk(self.accumulate))
        return [type(batch)(waveforms, lengths) for waveforms, lengths in pieces]

    def prepare(self, batch: Batch, generator: Optional[torch.Generator] = None) -> StepBatch:
        """The batch's micro-batches with their targets (the family's `make_targets`, drawn from `generator`):
        what a timed step is given, so no target is made on the clock."""
        micro_batches = self.micro_batches(batch)
        parts = tuple((micro, self.family.make_targets(micro, self.model, generator)) for micro in micro_batches)
        return StepBatch(batch, parts)

    def forward(self, batch: Batch, targets: Any = None) -> LossOutput:
        """The family's forward pass and loss on one micro-batch, under autocast."""
        with self.autocast():
            return self.family.loss(self.model, batch, targets)

    def backward(self, forward: LossOutput) -> None:
        """Gradients of the loss; with micro-batches, of its share (loss / accumulate), added to the others'."""
        loss = forward.loss if self.accumulate == 1 else forward.loss / self.accumulate
        loss = loss if self.scaler is None else self.scaler.scale(loss)
        loss.backward()

    def update(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skipped (and the scale halved by update) when a gradient overflowed
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.family.after_update(self.model)

    def run(self, batch: StepInput, hooks: StepHooks = BARE) -> LossOutput:
        """One training step: each micro-batch's forward and backward, then one update, each phase inside its
        hook. A plain Batch is prepared first (its targets made here). Returns the last micro-batch's LossOutput."""
        prepared = batch if isinstance(batch, StepBatch) else self.prepare(batch)
        with hooks.step(prepared.batch):
            for micro_batch, targets in prepared.parts:
                with hooks.forward(micro_batch):
                    forward = self.forward(micro_batch, targets)
                with hooks.backward(forward):
                    self.backward(forward)
            with hooks.update():
                self.update()
        return forward

    def __call__(self, batch: StepInput) -> Any:
        """The bare step; returns the model's own output (of the last micro-batch)."""
        return self.run(batch).output


def family_of_model(model: nn.Module) -> ModelFamily:
    """The family of a built-in model (each carries its configuration, named as `--model` names it); a model of
    another kind has no family to find: ValueError (its caller passes the family)."""
    from w2vprof.models.registry import get_family

    name = getattr(getattr(model, "config", None), "name", None)
    if not isinstance(name, str):
        raise ValueError(f"a {type(model).__name__} is no built-in model: pass its model family")
    return get_family(name)


def batch_of(batch: StepInput) -> Batch:
    """The whole batch, prepared or not."""
    return batch.batch if isinstance(batch, StepBatch) else batch
