"""What every built-in model shares: torchaudio's conv stack and transformer, built with every hyper-parameter
passed explicitly, and the front end of a step on them (frame lengths on the host, padding masks).

Module names are the same in every built-in model (`feature_extractor`, `feature_projection`, `transformer`), so
one per-layer map covers their encoders (w2vprof.models.layers).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import torch
from torch import Tensor, nn

from w2vprof.models.config import ModelConfig, frames_for_samples
from w2vprof.models.objective import host_lengths

__all__ = ["SpeechEncoderModel", "build_backbone", "encoder_arguments", "to_device_without_waiting"]


def encoder_arguments(config: ModelConfig) -> Dict[str, Any]:
    """The conv stack's and transformer's arguments of torchaudio's builders (wav2vec2_model, wavlm_model,
    hubert_pretrain_model), every one from the configuration."""
    return dict(
        extractor_mode=config.extractor_mode,
        extractor_conv_layer_config=[list(layer) for layer in config.conv_layers],
        extractor_conv_bias=config.conv_bias,
        encoder_embed_dim=config.embed_dim,
        encoder_projection_dropout=config.input_dropout,
        encoder_pos_conv_kernel=config.pos_conv_kernel,
        encoder_pos_conv_groups=config.pos_conv_groups,
        encoder_num_layers=config.num_layers,
        encoder_num_heads=config.num_heads,
        encoder_attention_dropout=config.attention_dropout,
        encoder_ff_interm_features=config.ffn_dim,
        encoder_ff_interm_dropout=config.activation_dropout,
        encoder_dropout=config.dropout,
        encoder_layer_norm_first=config.layer_norm_first,
        encoder_layer_drop=config.layer_drop,
    )


def build_backbone(config: ModelConfig) -> Any:
    """torchaudio's Wav2Vec2Model without a head: wav2vec2_model, or wavlm_model (gated relative position bias)
    where the configuration has relative attention buckets."""
    from torchaudio.models import wav2vec2_model, wavlm_model

    arguments = encoder_arguments(config)
    if config.relative_attention_buckets:
        return wavlm_model(
            **arguments,
            encoder_num_buckets=config.relative_attention_buckets,
            encoder_max_distance=config.relative_attention_max_distance,
            aux_num_out=None,
        )
    return wav2vec2_model(**arguments, aux_num_out=None)


def to_device_without_waiting(host: Tensor, device: torch.device) -> Tensor:
    """A small host tensor on `device`, queued behind the device's work instead of waiting for it.

    NB: on CUDA the copy comes from pinned memory (torch caches those blocks): from pageable memory the driver
    may synchronise with the stream first. On the CPU this is the tensor itself.
    """
    if device.type == "cuda":
        host = host.pin_memory()
    return host.to(device, non_blocking=True)


class SpeechEncoderModel(nn.Module):
    """Base of the built-in models: subclasses set `config`, `feature_extractor` and `transformer`."""

    config: ModelConfig
    feature_extractor: Any  # torchaudio's FeatureExtractor and Transformer (torchaudio has no type information)
    transformer: Any

    def _features(self, waveforms: Tensor, lengths: Optional[Tensor]) -> tuple[Tensor, np.ndarray, Tensor]:
        """CNN features f (B, T, C), their frame lengths on the host, and the real-frame mask (B, T).

        Frame lengths follow from the sample lengths by the conv arithmetic, so they are computed on the host:
        the step's decisions on them (padding, counts, masking) never wait for the device.
        """
        # NB: torchaudio would compute the frame lengths on the lengths' device; it only does that arithmetic.
        features, _ = self.feature_extractor(waveforms, None)
        batch, frames, _ = features.shape
        if lengths is None:
            frame_lengths = np.full(batch, frames, dtype=np.int64)
        else:
            frame_lengths = frames_for_samples(host_lengths(lengths), self.config.conv_layers)
        on_device = to_device_without_waiting(torch.from_numpy(frame_lengths), features.device)
        real = torch.arange(frames, device=features.device)[None, :] < on_device[:, None]
        return features, frame_lengths, real

    @staticmethod
    def _feature_penalty(features: Tensor, real_f: Tensor, num_real: int) -> Tensor:
        """Mean squared CNN feature over the real frames (padded frames left out)."""
        return (features.float().pow(2) * real_f).sum() / (num_real * features.shape[-1])

    @staticmethod
    def _attention_mask(real: Tensor, dtype: torch.dtype, padded: bool) -> Optional[Tensor]:
        """Additive mask (B, 1, T, T) hiding padded keys; None for an unpadded batch (the faster kernel)."""
        if not padded:
            return None
        batch, frames = real.shape
        mask = (~real)[:, None, None, :].to(dtype) * -10000.0
        return mask.expand(batch, 1, frames, frames)

    def _encode(self, x: Tensor, real: Tensor, padded: bool) -> Tensor:
        """The transformer over x (B, T, D), padded keys hidden.

        WavLM's attention takes the padding as a key padding mask (its relative position bias is the attention
        mask), which torchaudio's Transformer.forward does not pass on; so for WavLM the same steps run here:
        positional convolution, the layers (the first one's position bias handed to the next), the final norm.
        """
        if not self.config.relative_attention_buckets:
            return self.transformer(x, attention_mask=self._attention_mask(real, x.dtype, padded))
        transformer = self.transformer
        x = transformer._preprocess(x)
        padding = None
        if padded:  # additive, as torchaudio turns a boolean key padding mask into: -inf on padded keys
            padding = torch.zeros(real.shape, dtype=x.dtype, device=x.device).masked_fill(~real, float("-inf"))
        position_bias = None
        for layer in transformer.layers:
            if self.training and transformer.layer_drop > 0 and torch.rand(1).item() <= transformer.layer_drop:
                continue  # as torchaudio's Transformer.forward (every built-in configuration has layerdrop 0)
            x, position_bias = layer(x, None, position_bias=position_bias, key_padding_mask=padding)
        if not transformer.layer_norm_first:
            x = transformer.layer_norm(x)
        return x
