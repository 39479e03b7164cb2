"""The wav2vec 2.0 pretraining family (w2vprof.models.family): the model of models/pretraining.py, its contrastive
objective (the targets are the model's own quantized features: nothing comes with the batch), the Gumbel
temperature schedule after each update, its per-layer map and Table 1's groups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from w2vprof.models.config import MODEL_NAMES, get_config
from w2vprof.models.family import OBJECTIVE, LayerSpec, ModelFamily, OptimizerSettings

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from w2vprof.models.pretraining import PretrainingOutput, Wav2Vec2ForPretraining
    from w2vprof.workload import Batch

__all__ = ["WAV2VEC2", "Wav2Vec2Family"]

#: Table 1's groups (the summary CSV's contract).
_GROUP_OF_KIND = {
    "cnn": "cnn_encoder",
    "projection": "cnn_encoder",
    "positional": "transformer",
    "transformer": "transformer",
    "quantizer": "quantizer",
    "head": "heads",
    "loss": "heads",
}


class Wav2Vec2Family(ModelFamily):
    name = "wav2vec2"
    model_names = MODEL_NAMES
    summary_groups = ("cnn_encoder", "transformer", "attention", "quantizer", "heads")

    def owns(self, model: nn.Module) -> bool:
        return type(model).__name__ == "Wav2Vec2ForPretraining"

    def build(self, name: str) -> nn.Module:
        from w2vprof.models import build_model

        return build_model(name)

    def forward(self, model: nn.Module, batch: Batch) -> PretrainingOutput:
        output: PretrainingOutput = _wav2vec2(model)(batch.waveforms, batch.lengths)
        return output

    def loss(self, output: PretrainingOutput) -> torch.Tensor:
        return output.loss

    def frames(self, output: PretrainingOutput) -> tuple[int, int]:
        return output.num_masked, output.num_frames

    def after_update(self, model: nn.Module) -> None:
        _wav2vec2(model).step_schedule()  # the Gumbel temperature follows the update count (fairseq's set_num_updates)

    def optimizer_settings(self, model: nn.Module) -> OptimizerSettings:
        """fairseq's pretraining values: decoupled weight decay 0.01, betas (0.9, 0.98), eps 1e-6."""
        c = _wav2vec2(model).config
        return OptimizerSettings(c.lr, c.adam_betas, c.adam_eps, c.weight_decay)

    def layers(self, model: nn.Module) -> list[LayerSpec]:
        return model_layers(_wav2vec2(model))

    def transformer_layer_count(self, name: str) -> int:
        return get_config(name).num_layers

    def group_of(self, layer: LayerSpec) -> str:
        return _GROUP_OF_KIND[layer.kind]

    def inference(self, model: nn.Module, waveforms: torch.Tensor) -> Any:
        return model(waveforms, inference_only=True)


WAV2VEC2 = Wav2Vec2Family()


def _wav2vec2(model: nn.Module) -> Wav2Vec2ForPretraining:
    """`model` as the family's own type (for the type checker: a family is handed models it owns)."""
    return cast("Wav2Vec2ForPretraining", model)


def _child_count(model: nn.Module, path: str) -> int:
    """How many blocks the ModuleList at `path` holds (a ModuleList's children are its items)."""
    return sum(1 for _ in model.get_submodule(path).children())


def model_layers(model: Wav2Vec2ForPretraining) -> list[LayerSpec]:
    """wav2vec 2.0's layers in forward order; every parameter belongs to exactly one, so per-layer params add up
    to the model's."""
    conv_count = _child_count(model, "feature_extractor.conv_layers")
    layer_count = _child_count(model, "transformer.layers")
    layers = [LayerSpec(f"cnn.{i}", "cnn", (f"feature_extractor.conv_layers.{i}",)) for i in range(conv_count)]
    layers.append(LayerSpec("feature_projection", "projection", ("feature_projection",)))
    layers.append(LayerSpec("mask_embedding", "head", (), ("mask_embedding",)))
    # The transformer's own LayerNorm sits before the layers (post-LN models) or after them (pre-LN): either
    # way it is a few FLOPs, so it rides with the positional convolution. (torchaudio's Transformer has the
    # opposite flag: its layer_norm_first is True for post-LN models, whose LayerNorm comes first.)
    after = () if model.transformer.layer_norm_first else ("transformer.layer_norm",)
    positional = ("transformer.pos_conv_embed", "transformer.layer_norm")
    layers.append(LayerSpec("positional_conv", "positional", positional, after_transformer=after))
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
