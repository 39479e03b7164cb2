"""The counting pass: one training step, untimed, with counters attached to its phases, and what it counted as the
record's fields and the layer rows.

`measurement_pass` runs the training step (w2vprof.measure.step.TrainingStep.run) with `CountingHooks`: around each
micro-batch's forward the FLOP counter (per module), the saved-tensor tracker (w2vprof.measure.activations) and
the backward-node labeler (w2vprof.measure.attribution); around its backward the per-layer backward counter;
before the update the gradients' bytes. The step itself is the one every timed step runs; nothing of it is
written here.

NB: the backward's total is the sum of its per-layer counts: the per-layer counter uses the FLOP counter's formulas
and sees every backward op, so the two are equal by construction (tests compare them). Counting the backward (and
the optimizer step, which has no counted FLOPs) a second time under torch's counter would only add a Python dispatch
per op to the pass, which a sweep pays once per configuration.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional

from w2vprof.measure.recipes import OPTIMIZER_FLOPS_PER_PARAM
from w2vprof.measure.step import StepHooks
from w2vprof.models.layers import OBJECTIVE
from w2vprof.records import LayerRecord

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from w2vprof.measure.activations import ActivationTracker
    from w2vprof.measure.attribution import NodeLabeler
    from w2vprof.measure.flops import FlopCount
    from w2vprof.measure.recipes import AppliedRecipe
    from w2vprof.measure.step import StepInput, TrainingStep
    from w2vprof.models.family import LossOutput
    from w2vprof.models.layers import LayerSpec
    from w2vprof.workload import Batch

__all__ = [
    "ADAMW_FLOPS_PER_PARAM",
    "FLOPS_SOURCE",
    "CountingHooks",
    "PassCounts",
    "count_fields",
    "layer_rows",
    "measurement_pass",
]

#: NB: the optimizer update is elementwise, which FLOP counters do not count (w2vprof.measure.recipes lists them).
ADAMW_FLOPS_PER_PARAM = OPTIMIZER_FLOPS_PER_PARAM["adamw"]

FLOPS_SOURCE = "torch.utils.flop_counter (fwd, bwd; CPU attention formula added); optim estimated: 14/param AdamW"


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
    masked_fraction: Optional[float]  # masked / real frames; None where the output has no such counts
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


@dataclass(frozen=True)
class _MicroBatchCounts:
    forward: FlopCount
    bwd_by_layer: dict[str, int]
    recompute_by_layer: dict[str, int]
    act_by_layer: dict[str, int]
    loss: float
    num_masked: Optional[int]  # None: the model's output says nothing of masking (CTC fine-tuning, a user's model)
    num_frames: Optional[int]


class CountingHooks(StepHooks):
    """The counters around a training step's phases (see the module's notes); `micro_batches` holds what each
    micro-batch's forward and backward counted, `grad_bytes` the gradients as the update found them."""

    def __init__(self, step: TrainingStep, layers: list[LayerSpec]) -> None:
        self._step = step
        self._layers = layers
        self.micro_batches: list[_MicroBatchCounts] = []
        self.grad_bytes = 0
        self._forward: Optional[tuple[ActivationTracker, NodeLabeler, FlopCount]] = None

    @contextmanager
    def forward(self, batch: Batch) -> Iterator[None]:
        from w2vprof.measure.activations import ActivationTracker
        from w2vprof.measure.attribution import NodeLabeler
        from w2vprof.measure.flops import count_flops

        tracker = ActivationTracker(self._step.model, self._layers)
        labeler = NodeLabeler(self._step.model, self._layers)
        with count_flops() as counter:
            with tracker.track(), labeler.track():
                yield
            self._forward = (tracker, labeler, counter.snapshot())

    @contextmanager
    def backward(self, forward: LossOutput) -> Iterator[None]:
        from w2vprof.measure.attribution import backward_flops_by_layer

        assert self._forward is not None, "a backward without its forward"
        tracker, labeler, after_forward = self._forward
        labeler.label_from(forward.loss, OBJECTIVE)
        recompute: dict[str, int] = {}
        with backward_flops_by_layer(labeler.labels, recompute) as bwd_by_layer:
            yield
        masked, frames = getattr(forward.output, "num_masked", None), getattr(forward.output, "num_frames", None)
        counts = _MicroBatchCounts(
            after_forward,
            dict(bwd_by_layer),
            recompute,
            dict(tracker.bytes_by_layer),
            float(forward.loss.detach()),
            masked,
            frames,
        )
        self.micro_batches.append(counts)
        self._forward = None  # the labels hold the graph's nodes: let them go

    @contextmanager
    def update(self) -> Iterator[None]:
        from w2vprof.measure.memory import tensor_bytes

        self.grad_bytes = tensor_bytes(p.grad for p in self._step.model.parameters() if p.grad is not None)
        yield


def measurement_pass(step: TrainingStep, layers: list[LayerSpec], batch: StepInput) -> PassCounts:
    """One full training step, untimed, under CountingHooks: for each micro-batch (one without accumulation) the
    forward's FLOPs per module, saved-tensor bytes and node labels, the backward's FLOPs per layer; then the update."""
    hooks = CountingHooks(step, layers)
    step.run(batch, hooks)
    return _pass_counts(step, hooks)


def _pass_counts(step: TrainingStep, hooks: CountingHooks) -> PassCounts:
    from w2vprof.measure.memory import tensor_bytes
    from w2vprof.measure.recipes import optimizer_flops_per_param
    from w2vprof.measure.step import optimizer_state_bytes

    model, passes = step.model, hooks.micro_batches
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
        grad_bytes=hooks.grad_bytes,
        optim_state_bytes=optimizer_state_bytes(step.optimizer),
        loss=sum(p.loss for p in passes) / len(passes),
        masked_fraction=_masked_fraction(passes),
        recompute_by_layer=_add_up(p.recompute_by_layer for p in passes),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        optim_flops_per_param=optimizer_flops_per_param(step.optimizer),
    )


def _masked_fraction(passes: list[_MicroBatchCounts]) -> Optional[float]:
    """Masked frames over real frames, every micro-batch's, from the model's output (`num_masked`, `num_frames`:
    wav2vec 2.0, HuBERT and WavLM pretraining report them); None where an output has no masked count."""
    masked = [p.num_masked for p in passes]
    frames = [p.num_frames for p in passes]
    if any(m is None for m in masked) or any(f is None for f in frames):
        return None
    return sum(m or 0 for m in masked) / max(sum(f or 0 for f in frames), 1)


def _add_up(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for count in counts:
        for name, value in count.items():
            total[name] = total.get(name, 0) + value
    return total


def layer_rows(
    model: nn.Module, layers: list[LayerSpec], counts: PassCounts, applied: Optional[AppliedRecipe] = None
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


def count_fields(counts: PassCounts) -> dict[str, Any]:
    """The record's fields from the counting pass, by name."""
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
