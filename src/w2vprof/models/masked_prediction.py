"""HuBERT-style *pretraining*: masked prediction of cluster ids (HuBERT; WavLM with its own encoder).

HuBERT is built by torchaudio's `hubert_pretrain_model`, WavLM's encoder by `wavlm_model` with torchaudio's HuBERT
head components (`MaskGenerator`'s mask embedding, `LogitGenerator`'s projection and label embeddings), every
hyper-parameter passed explicitly. The step itself is ours, written as the wav2vec 2.0 one is: frame lengths and
the span mask on the host, no device read in the forward but the boolean selection of masked frames.

Module names, as in the wav2vec 2.0 model where the two agree:

    feature_extractor.conv_layers.{0..6}   CNN encoder blocks
    feature_projection                     LayerNorm(512) + Linear(512 -> D) + dropout (torchaudio's)
    mask_embedding                         learned vector that replaces masked frames
    transformer.pos_conv_embed             positional convolution
    transformer.layers.{i}                 transformer layers (WavLM: gated relative position bias)
    final_proj                             Linear(D -> final_dim)
    cluster_prediction                     label embeddings, cosine logits over the clusters, cross-entropy
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
from torch import Tensor, nn

from w2vprof.models.config import ModelConfig
from w2vprof.models.encoder import SpeechEncoderModel, build_backbone, encoder_arguments, to_device_without_waiting
from w2vprof.models.objective import GradMultiply, compute_span_mask

__all__ = ["ClusterPrediction", "MaskedPredictionModel", "MaskedPredictionOutput", "masking_arguments"]


@dataclass
class MaskedPredictionOutput:
    loss: Tensor  # masked CE + unmasked_weight * unmasked CE + feature_penalty_weight * feature penalty
    masked_loss: Tensor  # mean cross-entropy per masked frame
    unmasked_loss: Tensor  # mean cross-entropy per real unmasked frame (weight 0 by default: computed, not trained)
    feature_penalty: Tensor  # mean squared CNN feature over real frames
    num_masked: int  # masked frames in the batch
    num_frames: int  # real (unpadded) frames in the batch
    mask: Tensor  # (B, T) bool


class ClusterPrediction(nn.Module):
    """Cosine similarity of each projected frame with every cluster's label embedding, over a temperature, and the
    cross-entropy against the frame's cluster id.

    fairseq's HuBERT (and torchaudio's LogitGenerator) computes the same logits as [target, all C clusters] with the
    target's duplicate among the clusters set to -inf: the same cross-entropy as over the C clusters alone. Here
    they are one matmul of unit vectors, which FLOP counters see, instead of an elementwise cosine over a
    (C+1, N, F) copy of the label embeddings.
    """

    def __init__(self, label_embeddings: nn.Parameter, logit_temperature: float) -> None:
        super().__init__()
        self.label_embeddings = label_embeddings
        self.logit_temperature = logit_temperature

    def logits(self, projected: Tensor) -> Tensor:
        """projected (N, F) -> logits (N, C)."""
        unit_frames = nn.functional.normalize(projected.float(), dim=-1, eps=1e-8)
        unit_labels = nn.functional.normalize(self.label_embeddings.float(), dim=-1, eps=1e-8)
        return unit_frames @ unit_labels.t() / self.logit_temperature

    def forward(self, projected: Tensor, targets: Optional[Tensor] = None) -> Tensor:
        """projected (N, F), targets (N,) cluster ids -> mean cross-entropy; without targets, the logits (N, C)
        (Table 1's pass: through forward, so FLOP counters attribute them to this module)."""
        logits = self.logits(projected)
        return logits if targets is None else nn.functional.cross_entropy(logits, targets.long())


def masking_arguments(config: ModelConfig) -> Dict[str, Any]:
    """torchaudio's MaskGenerator arguments (also hubert_pretrain_model's): fairseq's static spans, overlap
    allowed, no channel masking (HuBERT's pretraining values)."""
    return dict(
        mask_prob=config.mask_prob,
        mask_selection="static",
        mask_other=0.0,
        mask_length=config.mask_length,
        no_mask_overlap=False,
        mask_min_space=1,
        mask_channel_prob=0.0,
        mask_channel_selection="static",
        mask_channel_other=0.0,
        mask_channel_length=10,
        no_mask_channel_overlap=False,
        mask_channel_min_space=1,
    )


def _torchaudio_parts(config: ModelConfig) -> tuple[Any, Any, Any]:
    """(Wav2Vec2Model, MaskGenerator, LogitGenerator) from torchaudio's builders, every value explicit."""
    if config.relative_attention_buckets:  # WavLM: torchaudio has no WavLM pretraining model, so HuBERT's head
        from torchaudio.models.wav2vec2.components import LogitGenerator, MaskGenerator

        backbone = build_backbone(config)
        masks = MaskGenerator(config.embed_dim, **masking_arguments(config))
        logits = LogitGenerator(
            config.embed_dim, config.clusters, config.final_dim, skip_masked=False, skip_nomask=False
        )
        return backbone, masks, logits
    from torchaudio.models import hubert_pretrain_model

    model = hubert_pretrain_model(
        **encoder_arguments(config),
        **masking_arguments(config),
        skip_masked=False,
        skip_nomask=False,
        num_classes=config.clusters,
        final_dim=config.final_dim,
        feature_grad_mult=None if config.feature_grad_mult == 1.0 else config.feature_grad_mult,
    )
    return model.wav2vec2, model.mask_generator, model.logit_generator


def _on(device: torch.device, parameter: nn.Parameter) -> nn.Parameter:
    """The parameter on `device`. torchaudio makes the label and mask embeddings with torch.FloatTensor, which
    ignores torch's default device: built on the meta device, they alone would be on the CPU."""
    return parameter if parameter.device == device else nn.Parameter(parameter.detach().to(device))


class MaskedPredictionModel(SpeechEncoderModel):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.head != "cluster" or config.clusters < 1:
            raise ValueError(f"{config.name}: masked prediction needs head='cluster' and clusters >= 1")
        self.config = config
        backbone, masks, logits = _torchaudio_parts(config)
        device = backbone.encoder.feature_projection.projection.weight.device
        self.feature_extractor = backbone.feature_extractor
        self.feature_projection = backbone.encoder.feature_projection
        self.mask_embedding = _on(device, masks.mask_embedding)
        self.transformer = backbone.encoder.transformer
        self.final_proj = logits.final_proj
        self.cluster_prediction = ClusterPrediction(_on(device, logits.label_embeddings), config.logit_temperature)

    def step_schedule(self) -> None:
        """Once per optimizer update: masked prediction has no schedule (wav2vec 2.0's Gumbel temperature)."""

    def forward(
        self,
        waveforms: Tensor,
        lengths: Optional[Tensor] = None,
        targets: Optional[Tensor] = None,
        inference_only: bool = False,
    ) -> MaskedPredictionOutput | Tensor:
        """One pretraining forward pass: waveforms (B, S), lengths (B,) in samples, targets (B, T) cluster ids,
        one per frame of the padded batch. inference_only=True runs every module on every frame (Table 1)."""
        if inference_only:
            return self._inference(waveforms, lengths)
        c = self.config
        features, frame_lengths, real = self._features(waveforms, lengths)
        if targets is None or tuple(targets.shape) != tuple(real.shape):
            shape = None if targets is None else tuple(targets.shape)
            raise ValueError(f"masked prediction needs one cluster id per frame, {tuple(real.shape)}; got {shape}")
        real_f = real.unsqueeze(-1).to(features.dtype)
        num_real = int(frame_lengths.sum())  # host values: no device read
        feature_penalty = self._feature_penalty(features, real_f, num_real)
        if c.feature_grad_mult != 1.0:
            features = GradMultiply.apply(features, c.feature_grad_mult)
        x = self.feature_projection(features)
        x = x * real_f.to(x.dtype)  # padded frames carry nothing

        frames = x.shape[1]
        host_mask = compute_span_mask(frame_lengths, frames, c.mask_prob, c.mask_length, c.min_masks)
        num_masked = int(host_mask.sum())  # a host tensor: no device read
        mask = to_device_without_waiting(host_mask, x.device)
        x = torch.where(mask.unsqueeze(-1), self.mask_embedding.to(x.dtype), x)
        context = self._encode(x, real, bool((frame_lengths < frames).any()))

        projected = self.final_proj(context)  # every frame, as fairseq (it scores the unmasked frames too)
        # NB: boolean selection waits for the device on a GPU (the output size comes from the mask), as in wav2vec 2.0.
        masked_loss = self.cluster_prediction(projected[mask], targets[mask])
        with torch.set_grad_enabled(torch.is_grad_enabled() and c.unmasked_weight > 0):
            unmasked = real & ~mask
            unmasked_loss = self.cluster_prediction(projected[unmasked], targets[unmasked])
        loss = masked_loss + c.feature_penalty_weight * feature_penalty
        if c.unmasked_weight > 0:
            loss = loss + c.unmasked_weight * unmasked_loss
        return MaskedPredictionOutput(
            loss=loss,
            masked_loss=masked_loss.detach(),
            unmasked_loss=unmasked_loss.detach(),
            feature_penalty=feature_penalty.detach(),
            num_masked=num_masked,
            num_frames=num_real,
            mask=mask,
        )

    def _inference(self, waveforms: Tensor, lengths: Optional[Tensor]) -> Tensor:
        features, frame_lengths, real = self._features(waveforms, lengths)
        x = self.feature_projection(features)
        context = self._encode(x, real, bool((frame_lengths < x.shape[1]).any()))
        projected = self.final_proj(context)
        return self.cluster_prediction(projected.reshape(-1, projected.shape[-1])).sum()
