"""wav2vec 2.0 *pretraining* model: torchaudio's conv stack and transformer plus our pretraining head.

Module names make the per-layer structure obvious, because measure/ attributes memory and FLOPs to them:

    feature_extractor.conv_layers.{0..6}   CNN encoder blocks
    feature_projection                     LayerNorm(512) + Linear(512 -> D) + dropout
    mask_embedding                         learned vector that replaces masked frames
    transformer.pos_conv_embed             positional convolution
    transformer.layers.{i}                 transformer layers
    quantizer                              Gumbel product quantizer (weight_proj, codevectors)
    project_q, final_proj                  heads into the contrastive space
    contrastive                            contrastive loss (negatives, cosine logits, CE)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

from w2vprof.models.config import ModelConfig, get_config
from w2vprof.models.encoder import SpeechEncoderModel, build_backbone, to_device_without_waiting
from w2vprof.models.objective import (
    ContrastiveLoss,
    GradMultiply,
    GumbelVectorQuantizer,
    compute_span_mask,
)

__all__ = ["PretrainingOutput", "Wav2Vec2ForPretraining", "build_model", "to_device_without_waiting", "NUM_UPDATES"]

#: The state_dict entry holding the update count (an int64 scalar tensor).
NUM_UPDATES = "num_updates"


@dataclass
class PretrainingOutput:
    loss: Tensor  # contrastive + diversity_weight * diversity + penalty_weight * feature_penalty
    contrastive_loss: Tensor  # mean cross-entropy per masked frame
    diversity_loss: Tensor  # (G*V - perplexity) / (G*V)
    feature_penalty: Tensor  # mean squared CNN feature over real frames
    num_masked: int  # masked frames in the batch (B * M)
    num_frames: int  # real (unpadded) frames in the batch
    prob_perplexity: Tensor
    code_perplexity: Tensor
    temperature: float
    mask: Tensor  # (B, T) bool


class FeatureProjection(nn.Module):
    """LayerNorm + Linear + dropout, returning the normalised features too: they are the quantizer's input."""

    def __init__(self, layer_norm: nn.Module, projection: nn.Module, dropout: nn.Module) -> None:
        super().__init__()
        self.layer_norm = layer_norm
        self.projection = projection
        self.dropout = dropout

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        normed = self.layer_norm(features)
        return normed, self.dropout(self.projection(normed))


class Wav2Vec2ForPretraining(SpeechEncoderModel):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        backbone = build_backbone(config)
        conv_channels = config.conv_layers[-1][0]
        self.feature_extractor = backbone.feature_extractor
        torchaudio_projection = backbone.encoder.feature_projection
        self.feature_projection = FeatureProjection(
            torchaudio_projection.layer_norm, torchaudio_projection.projection, torchaudio_projection.dropout
        )
        self.mask_embedding = nn.Parameter(torch.empty(config.embed_dim).uniform_())
        self.transformer = backbone.encoder.transformer
        self.quantizer = GumbelVectorQuantizer(
            conv_channels, config.codebook_groups, config.codebook_entries, config.final_dim
        )
        self.project_q = nn.Linear(config.final_dim, config.final_dim)
        self.final_proj = nn.Linear(config.embed_dim, config.final_dim)
        self.contrastive = ContrastiveLoss(config.num_negatives, config.logit_temperature)
        # Updates taken so far: drives the Gumbel temperature schedule. A Python int, not a device buffer, so
        # reading it never waits for the device; it still travels with state_dict (see _save_to_state_dict).
        self.num_updates = 0

    # -- schedule -----------------------------------------------------------------------------------
    @property
    def temperature(self) -> float:
        c = self.config
        return max(c.temperature_start * c.temperature_decay**self.num_updates, c.temperature_end)

    def step_schedule(self) -> None:
        """Call once per optimizer update (as fairseq's set_num_updates)."""
        self.num_updates += 1

    # The update count is saved as the int64 tensor `num_updates`, in the place a buffer would take, so
    # checkpoints and federated averaging (which averages every state entry) see it as before.
    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + NUM_UPDATES] = torch.tensor(self.num_updates, dtype=torch.long)

    def _load_from_state_dict(
        self,
        state_dict: Any,
        prefix: str,
        local_metadata: Any,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        key = prefix + NUM_UPDATES
        if key in state_dict:
            self.num_updates = int(state_dict[key])  # read once when loading, never inside a step
            # the base class would report the entry as unexpected: it is no parameter or buffer
            state_dict = {name: value for name, value in state_dict.items() if name != key}
        elif strict:
            missing_keys.append(key)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # -- training -----------------------------------------------------------------------------------
    def forward(
        self, waveforms: Tensor, lengths: Optional[Tensor] = None, inference_only: bool = False
    ) -> PretrainingOutput | Tensor:
        """One pretraining forward pass on a padded batch (waveforms (B, S), lengths (B,) in samples).

        inference_only=True runs every module on every frame without masking or loss (Table 1's workload);
        it goes through forward() so module hooks and FLOP attribution see the usual module paths.
        """
        if inference_only:
            return self._inference(waveforms, lengths)
        c = self.config
        features, frame_lengths, real = self._features(waveforms, lengths)
        real_f = real.unsqueeze(-1).to(features.dtype)
        num_real = int(frame_lengths.sum())  # host values: no device read
        feature_penalty = self._feature_penalty(features, real_f, num_real)
        if c.feature_grad_mult != 1.0:
            features = GradMultiply.apply(features, c.feature_grad_mult)

        normed, x = self.feature_projection(features)  # normed: the quantizer input ("unmasked features")
        x = x * real_f.to(x.dtype)  # padded frames carry nothing

        frames = x.shape[1]
        # Drawn on the host (as fairseq does) from host lengths, then copied over without waiting.
        mask = compute_span_mask(frame_lengths, frames, c.mask_prob, c.mask_length, c.min_masks)
        mask = to_device_without_waiting(mask, x.device)
        x = torch.where(mask.unsqueeze(-1), self.mask_embedding.to(x.dtype), x)

        padded = bool((frame_lengths < frames).any())
        context = self._encode(x, real, padded)

        batch = x.shape[0]
        # NB: boolean indexing (here and for normed below, and in its backward) makes a GPU wait: the output
        # size comes from the mask. Integer indices from the host mask would avoid it, but autograd would then
        # keep two int64 index tensors instead of the bool mask: another program, with other activation bytes.
        predictions = self.final_proj(context[mask].view(batch, -1, context.shape[-1]))
        masked_per_row = predictions.shape[1]
        codewords, prob_perplexity, code_perplexity = self.quantizer(normed[mask], self.temperature)
        targets = self.project_q(codewords.to(normed.dtype)).view(batch, masked_per_row, -1)

        contrastive_loss, _ = self.contrastive(predictions, targets)
        num_vars = c.codebook_groups * c.codebook_entries
        diversity_loss = (num_vars - prob_perplexity) / num_vars
        loss = contrastive_loss + c.diversity_weight * diversity_loss + c.feature_penalty_weight * feature_penalty
        return PretrainingOutput(
            loss=loss,
            contrastive_loss=contrastive_loss.detach(),
            diversity_loss=diversity_loss.detach(),
            feature_penalty=feature_penalty.detach(),
            num_masked=batch * masked_per_row,
            num_frames=num_real,
            prob_perplexity=prob_perplexity.detach(),
            code_perplexity=code_perplexity.detach(),
            temperature=self.temperature,
            mask=mask,
        )

    # -- inference (Table 1) ------------------------------------------------------------------------
    def _inference(self, waveforms: Tensor, lengths: Optional[Tensor]) -> Tensor:
        features, frame_lengths, real = self._features(waveforms, lengths)
        normed, x = self.feature_projection(features)
        padded = bool((frame_lengths < x.shape[1]).any())
        context = self._encode(x, real, padded)
        codewords, _, _ = self.quantizer(normed.reshape(-1, normed.shape[-1]), self.temperature)
        targets = self.project_q(codewords.to(normed.dtype))
        predictions = self.final_proj(context)
        return predictions.sum() + targets.sum()


def build_model(name: str, **overrides) -> Wav2Vec2ForPretraining:
    """A randomly initialised pretraining model by name (`tiny`, `base`, `large`); overrides change the config."""
    config = get_config(name)
    if overrides:
        config = config.with_overrides(**overrides)
    return Wav2Vec2ForPretraining(config)
