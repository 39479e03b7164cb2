"""The per-layer and per-group structure of a pretraining model, in forward order.

Each layer is a set of module paths; every parameter of the model belongs to exactly one layer, so per-layer
params add up to the model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["LayerSpec", "model_layers", "SUMMARY_GROUPS", "group_of_layer", "OBJECTIVE"]

OBJECTIVE = "objective"  # the row for work outside every listed module


@dataclass(frozen=True)
class LayerSpec:
    name: str  # cnn.0 ... cnn.6, feature_projection, positional_conv, transformer.0 ..., quantizer, ...
    kind: str  # cnn | projection | positional | transformer | quantizer | head | loss
    modules: tuple[str, ...]  # module paths relative to the model ("" = parameters directly on the model)
    parameters: tuple[str, ...] = ()  # parameters held directly by the model (mask_embedding)


def _child_count(model: nn.Module, path: str) -> int:
    """How many blocks the ModuleList at `path` holds (a ModuleList's children are its items)."""
    return sum(1 for _ in model.get_submodule(path).children())


def model_layers(model: nn.Module) -> list[LayerSpec]:
    conv_count = _child_count(model, "feature_extractor.conv_layers")
    layer_count = _child_count(model, "transformer.layers")
    layers = [LayerSpec(f"cnn.{i}", "cnn", (f"feature_extractor.conv_layers.{i}",)) for i in range(conv_count)]
    layers.append(LayerSpec("feature_projection", "projection", ("feature_projection",)))
    layers.append(LayerSpec("mask_embedding", "head", (), ("mask_embedding",)))
    # The transformer's own LayerNorm sits before the layers (post-LN models) or after them (pre-LN): either
    # way it is a few FLOPs, so it rides with the positional convolution.
    layers.append(LayerSpec("positional_conv", "positional", ("transformer.pos_conv_embed", "transformer.layer_norm")))
    layers.extend(
        LayerSpec(f"transformer.{i}", "transformer", (f"transformer.layers.{i}",)) for i in range(layer_count)
    )
    layers.append(LayerSpec("final_proj", "head", ("final_proj",)))
    layers.append(LayerSpec("quantizer", "quantizer", ("quantizer",)))
    layers.append(LayerSpec("project_q", "head", ("project_q",)))
    layers.append(LayerSpec("contrastive_loss", "loss", ("contrastive",)))
    # Work done by the model itself outside every submodule: masking, feature penalty, diversity loss.
    layers.append(LayerSpec(OBJECTIVE, "loss", ()))
    return layers


#: Table 1 groups (summary CSV contract): layer kinds -> module group.
SUMMARY_GROUPS = ("cnn_encoder", "transformer", "attention", "quantizer", "heads")


def group_of_layer(layer: LayerSpec) -> str:
    return {
        "cnn": "cnn_encoder",
        "projection": "cnn_encoder",
        "positional": "transformer",
        "transformer": "transformer",
        "quantizer": "quantizer",
        "head": "heads",
        "loss": "heads",
    }[layer.kind]
