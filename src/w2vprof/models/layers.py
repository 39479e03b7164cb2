"""Per-layer maps of the built-in models, in forward order, and the Table 1 group of each layer kind.

Each layer is a set of module paths; every parameter of the model belongs to exactly one layer, so per-layer
params add up to the model's. The encoder's rows are the same in every built-in model (models/encoder.py); the
heads differ: wav2vec 2.0's quantizer and contrastive loss, HuBERT's projection and cluster prediction, CTC's
linear blocks and loss.

The measurement path (the counting pass, layer timing, the trace, Table 1) takes these maps through the model-family
interface (models/family.py `layers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = [
    "KIND_GROUPS",
    "OBJECTIVE",
    "PRETRAINING_GROUPS",
    "SPEECH_GROUPS",
    "LayerSpec",
    "ctc_layers",
    "encoder_layers",
    "masked_prediction_layers",
    "wav2vec2_layers",
]

OBJECTIVE = "objective"  # the row for work outside every listed module


@dataclass(frozen=True)
class LayerSpec:
    name: str  # cnn.0 ... cnn.6, feature_projection, positional_conv, transformer.0 ..., quantizer, ...
    kind: str  # cnn | projection | positional | transformer | quantizer | head | loss
    modules: tuple[str, ...]  # module paths relative to the model ("" = parameters directly on the model)
    parameters: tuple[str, ...] = ()  # parameters held directly by the model (mask_embedding)


#: Table 1 groups (summary CSV contract) of each layer kind; `attention` is the transformer layers' QK^T and AV.
KIND_GROUPS = {
    "cnn": "cnn_encoder",
    "projection": "cnn_encoder",
    "positional": "transformer",
    "transformer": "transformer",
    "quantizer": "quantizer",
    "head": "heads",
    "loss": "heads",
}
#: wav2vec 2.0 pretraining's groups (the paper's Table 1).
PRETRAINING_GROUPS = ("cnn_encoder", "transformer", "attention", "quantizer", "heads")
#: Every other built-in model's: no quantizer.
SPEECH_GROUPS = ("cnn_encoder", "transformer", "attention", "heads")


def _child_count(model: nn.Module, path: str) -> int:
    """How many blocks the ModuleList at `path` holds (a ModuleList's children are its items)."""
    return sum(1 for _ in model.get_submodule(path).children())


def encoder_layers(model: nn.Module, mask_embedding: bool) -> list[LayerSpec]:
    """The CNN blocks, the feature projection, the mask embedding (pretraining), the positional convolution and
    the transformer layers."""
    conv_count = _child_count(model, "feature_extractor.conv_layers")
    layer_count = _child_count(model, "transformer.layers")
    layers = [LayerSpec(f"cnn.{i}", "cnn", (f"feature_extractor.conv_layers.{i}",)) for i in range(conv_count)]
    layers.append(LayerSpec("feature_projection", "projection", ("feature_projection",)))
    if mask_embedding:
        layers.append(LayerSpec("mask_embedding", "head", (), ("mask_embedding",)))
    # The transformer's own LayerNorm sits before the layers (post-LN models) or after them (pre-LN): either
    # way it is a few FLOPs, so it rides with the positional convolution.
    layers.append(LayerSpec("positional_conv", "positional", ("transformer.pos_conv_embed", "transformer.layer_norm")))
    layers.extend(
        LayerSpec(f"transformer.{i}", "transformer", (f"transformer.layers.{i}",)) for i in range(layer_count)
    )
    return layers


def wav2vec2_layers(model: nn.Module) -> list[LayerSpec]:
    """wav2vec 2.0 pretraining (models/pretraining.py)."""
    return encoder_layers(model, mask_embedding=True) + [
        LayerSpec("final_proj", "head", ("final_proj",)),
        LayerSpec("quantizer", "quantizer", ("quantizer",)),
        LayerSpec("project_q", "head", ("project_q",)),
        LayerSpec("contrastive_loss", "loss", ("contrastive",)),
        # Work done by the model itself outside every submodule: masking, feature penalty, diversity loss.
        LayerSpec(OBJECTIVE, "loss", ()),
    ]


def masked_prediction_layers(model: nn.Module) -> list[LayerSpec]:
    """HuBERT and WavLM pretraining (models/masked_prediction.py); the label embeddings ride with their loss."""
    return encoder_layers(model, mask_embedding=True) + [
        LayerSpec("final_proj", "head", ("final_proj",)),
        LayerSpec("cluster_prediction", "loss", ("cluster_prediction",)),
        # masking, feature penalty, selecting the masked frames
        LayerSpec(OBJECTIVE, "loss", ()),
    ]


def ctc_layers(model: nn.Module) -> list[LayerSpec]:
    """CTC fine-tuning (models/ctc.py)."""
    blocks = _child_count(model, "ctc_head.blocks")
    return (
        encoder_layers(model, mask_embedding=False)
        + [LayerSpec(f"ctc_head.{i}", "head", (f"ctc_head.blocks.{i}",)) for i in range(blocks)]
        + [
            LayerSpec("ctc_lin", "head", ("ctc_lin",)),
            LayerSpec("ctc_loss", "loss", ("ctc_loss",)),
            # the encoder output's normalisation (SpeechBrain's output_norm)
            LayerSpec(OBJECTIVE, "loss", ()),
        ]
    )
