"""One model family: what the training step, the counting pass, layer timing, the trace and Table 1 need of one
kind of model, so that none of them holds code for a particular model (issue 21).

A family supplies, for the models it builds (`model_names`; `owns(model)` says whether a built model is one of
them):
- its builder: `build(name)`, a randomly initialised model in training mode's default state (not yet moved);
- its batch and targets: `forward(model, batch)` runs the training forward on one workload batch (waveforms and
  lengths), drawing or making whatever targets its objective needs, and returns the model's output;
- its loss from that output: `loss(output)`, the scalar tensor the backward starts from (computed in `forward`:
  the step calls both inside the forward phase, so the counters see every operation of the objective);
  `frames(output)`, (masked, real) frames of the batch, the record's masked fraction;
- what follows each optimizer update: `after_update(model)` (a schedule; nothing by default) and the optimizer's
  hyper-parameters, `optimizer_settings(model)`;
- its per-layer map: `layers(model)`, LayerSpec rows in forward order, every parameter in exactly one layer, the
  work outside every listed module in the last row, OBJECTIVE; `transformer_layer_count(name)` (recipes check
  `--freeze cnn+N` against it without building);
- its Table-1 groups: `summary_groups` and `group_of(layer)`, and `inference(model, waveforms)`, the forward pass
  Table 1 counts (every module on every frame, no masking, no loss). Table 1 splits each layer of kind
  `transformer` into its weight layers (group `transformer`) and its attention products (group `attention`), so
  a family with transformer layers lists both groups.

Layer kinds the recipes act on: `cnn` (frozen by `--freeze cnn`), `transformer` (counted by `cnn+N`; everything
before the first one is frozen with them), and checkpointing/compile by kind (w2vprof.measure.recipes).

The registry (which family builds which model) is w2vprof.models.registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from w2vprof.workload import Batch

__all__ = ["OBJECTIVE", "LayerSpec", "ModelFamily", "OptimizerSettings"]

#: The per-layer row for work outside every listed module (masking, the losses' glue), last in every map.
OBJECTIVE = "objective"


@dataclass(frozen=True)
class LayerSpec:
    name: str  # cnn.0 ... cnn.6, feature_projection, positional_conv, transformer.0 ..., quantizer, ...
    kind: str  # cnn | projection | positional | transformer | quantizer | head | loss
    modules: tuple[str, ...]  # module paths relative to the model
    parameters: tuple[str, ...] = ()  # parameters held directly by the model (wav2vec 2.0's mask_embedding)
    #: of `modules`, those that run after the transformer layers (a pre-LN model's final LayerNorm): freezing
    #: everything below a frozen transformer layer (the recipe `--freeze cnn+N`) leaves them trainable
    after_transformer: tuple[str, ...] = ()


@dataclass(frozen=True)
class OptimizerSettings:
    """The optimizer's hyper-parameters a family trains with (AdamW; SGD and Adafactor take lr and weight decay)."""

    lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float


class ModelFamily:
    """The interface; see the module's notes. A method left as it is here raises NotImplementedError."""

    #: the family's name (wav2vec2, hubert, ...)
    name: str = ""
    #: the `--model` values it builds
    model_names: tuple[str, ...] = ()
    #: Table 1's groups, in order (the summary CSV's `module` values before `total`)
    summary_groups: tuple[str, ...] = ()

    def owns(self, model: nn.Module) -> bool:
        raise NotImplementedError

    def build(self, name: str) -> nn.Module:
        raise NotImplementedError

    def forward(self, model: nn.Module, batch: Batch) -> Any:
        raise NotImplementedError

    def loss(self, output: Any) -> torch.Tensor:
        raise NotImplementedError

    def frames(self, output: Any) -> tuple[int, int]:
        """(masked, real) frames of the batch; (0, 0) for an objective that masks nothing."""
        return 0, 0

    def after_update(self, model: nn.Module) -> None:
        """Runs after every optimizer update (a schedule); nothing by default."""

    def optimizer_settings(self, model: nn.Module) -> OptimizerSettings:
        raise NotImplementedError

    def layers(self, model: nn.Module) -> list[LayerSpec]:
        raise NotImplementedError

    def transformer_layer_count(self, name: str) -> int:
        raise NotImplementedError

    def group_of(self, layer: LayerSpec) -> str:
        raise NotImplementedError

    def inference(self, model: nn.Module, waveforms: torch.Tensor) -> Any:
        raise NotImplementedError
