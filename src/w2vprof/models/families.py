"""The built-in model families: wav2vec 2.0 and XLS-R (contrastive pretraining), HuBERT and WavLM (masked
prediction of cluster ids), each also fine-tuned with CTC (`ctc`).

Every built-in model has a ModelConfig (w2vprof.models.config) and the same encoder module names, so one class
answers for all of them; only the pretraining head differs (`Wav2Vec2Family`, `MaskedPredictionFamily`).
torch is imported when a model is built, not before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Tuple

from w2vprof.models.config import ModelConfig
from w2vprof.models.family import (
    CTC,
    PRETRAIN,
    LossOutput,
    ModelFamily,
    ModelOptions,
    OptimizerSettings,
)
from w2vprof.models.layers import (
    PRETRAINING_GROUPS,
    SPEECH_GROUPS,
    LayerSpec,
    ctc_layers,
    masked_prediction_layers,
    wav2vec2_layers,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import Tensor, nn

    from w2vprof.workload import Batch

__all__ = ["BuiltinFamily", "MaskedPredictionFamily", "Wav2Vec2Family"]


def _is_ctc(model: nn.Module) -> bool:
    from w2vprof.models.ctc import CtcModel

    return isinstance(model, CtcModel)


def _built(model: nn.Module) -> Any:
    """A built-in model as what it is (they all have `config` and `step_schedule`; nn.Module's typing knows
    neither)."""
    return model


class BuiltinFamily(ModelFamily):
    """A built-in model: its configuration, its pretraining head (subclasses) and CTC fine-tuning (shared)."""

    objectives = (PRETRAIN, CTC)

    def __init__(self, config: ModelConfig, source: str) -> None:
        self.config = config
        self.name = config.name
        self.source = source

    # -- what subclasses supply -------------------------------------------------------------------------------
    def pretraining_model(self, options: ModelOptions) -> nn.Module:
        raise NotImplementedError

    def pretraining_targets(self, batch: Batch, model: nn.Module, generator: Optional[torch.Generator]) -> Any:
        return None

    def pretraining_loss(self, model: nn.Module, batch: Batch, targets: Any) -> LossOutput:
        raise NotImplementedError

    def pretraining_layers(self, model: nn.Module) -> list[LayerSpec]:
        raise NotImplementedError

    pretraining_groups: Tuple[str, ...] = SPEECH_GROUPS

    # -- the interface -----------------------------------------------------------------------------------------
    def torchaudio_builders(self) -> Tuple[str, ...]:
        """The torchaudio builders this family calls (compat.BUILDER_NEEDS): the encoder's (WavLM's where the
        configuration has relative position buckets) and, for HuBERT's pretraining model, hubert_pretrain_model."""
        encoder = "wavlm_model" if self.config.relative_attention_buckets else "wav2vec2_model"
        if self.config.head == "cluster" and not self.config.relative_attention_buckets:
            return (encoder, "hubert_pretrain_model")
        return (encoder,)

    def check_support(self) -> None:
        from w2vprof.compat import check_model_support

        check_model_support(self.torchaudio_builders(), self.name)

    def build(self, objective: str = PRETRAIN, options: Optional[ModelOptions] = None) -> nn.Module:
        self.check_objective(objective)
        self.check_support()  # a torch/torchaudio pair that cannot build it: one line naming both, exit 2
        options = options or ModelOptions()
        if objective == CTC:
            from w2vprof.models.ctc import CtcModel

            return CtcModel(self.config, options.vocab)
        return self.pretraining_model(options)

    def make_targets(self, batch: Batch, model: nn.Module, generator: Optional[torch.Generator] = None) -> Any:
        if _is_ctc(model):
            from w2vprof.models.ctc import draw_transcripts
            from w2vprof.models.objective import host_lengths

            lengths = host_lengths(batch.lengths)
            vocab = _built(model).vocab
            return draw_transcripts(lengths, self.config.conv_layers, vocab, batch.waveforms.device, generator)
        return self.pretraining_targets(batch, model, generator)

    def loss(self, model: nn.Module, batch: Batch, targets: Any) -> LossOutput:
        if _is_ctc(model):
            output = model(batch.waveforms, batch.lengths, targets)
            return LossOutput(output.loss, {"ctc": output.loss.detach()}, output.num_utterances, output)
        return self.pretraining_loss(model, batch, targets)

    def layers(self, model: nn.Module) -> list[LayerSpec]:
        return ctc_layers(model) if _is_ctc(model) else self.pretraining_layers(model)

    def summary_groups(self, model: nn.Module) -> Tuple[str, ...]:
        return SPEECH_GROUPS if _is_ctc(model) else self.pretraining_groups

    def inference(self, model: nn.Module, batch: Batch) -> Tensor:
        result: Tensor = model(batch.waveforms, batch.lengths, inference_only=True)
        return result

    def after_update(self, model: nn.Module) -> None:
        _built(model).step_schedule()

    def optimizer_settings(self, model: nn.Module) -> OptimizerSettings:
        # The configuration the model was built with: build_model(name, lr=...) changes it, and the step must train
        # with what the caller asked for, not the registry's value.
        c: ModelConfig = getattr(model, "config", None) or self.config
        return OptimizerSettings(lr=c.lr, betas=c.adam_betas, eps=c.adam_eps, weight_decay=c.weight_decay)

    def receptive_field_samples(self) -> int:
        field, step = 1, 1
        for _, kernel, stride in self.config.conv_layers:
            field += (kernel - 1) * step
            step *= stride
        return field


class Wav2Vec2Family(BuiltinFamily):
    """wav2vec 2.0 pretraining (models/pretraining.py): the targets come from the model's own quantizer."""

    pretraining_groups = PRETRAINING_GROUPS

    def pretraining_model(self, options: ModelOptions) -> nn.Module:
        from w2vprof.models.pretraining import Wav2Vec2ForPretraining

        return Wav2Vec2ForPretraining(self.config)

    def pretraining_loss(self, model: nn.Module, batch: Batch, targets: Any) -> LossOutput:
        output = model(batch.waveforms, batch.lengths)
        parts = {
            "contrastive": output.contrastive_loss,
            "diversity": output.diversity_loss,
            "feature_penalty": output.feature_penalty,
        }
        return LossOutput(output.loss, parts, output.num_masked, output)

    def pretraining_layers(self, model: nn.Module) -> list[LayerSpec]:
        return wav2vec2_layers(model)


class MaskedPredictionFamily(BuiltinFamily):
    """HuBERT and WavLM pretraining (models/masked_prediction.py): random cluster ids as targets, one per frame
    (the step costs the same whatever the ids)."""

    def pretraining_model(self, options: ModelOptions) -> nn.Module:
        from w2vprof.models.masked_prediction import MaskedPredictionModel

        clusters = options.clusters or self.config.clusters
        return MaskedPredictionModel(self.config.with_overrides(clusters=clusters))

    def pretraining_targets(self, batch: Batch, model: nn.Module, generator: Optional[torch.Generator]) -> Tensor:
        import torch

        from w2vprof.models.config import frames_for_samples
        from w2vprof.models.encoder import to_device_without_waiting

        frames = frames_for_samples(int(batch.waveforms.shape[1]), self.config.conv_layers)
        ids = torch.randint(0, _built(model).config.clusters, (batch.size, frames), generator=generator)
        return to_device_without_waiting(ids, batch.waveforms.device)

    def pretraining_loss(self, model: nn.Module, batch: Batch, targets: Any) -> LossOutput:
        output = model(batch.waveforms, batch.lengths, targets)
        parts = {
            "masked": output.masked_loss,
            "unmasked": output.unmasked_loss,
            "feature_penalty": output.feature_penalty,
        }
        return LossOutput(output.loss, parts, output.num_masked, output)

    def pretraining_layers(self, model: nn.Module) -> list[LayerSpec]:
        return masked_prediction_layers(model)
