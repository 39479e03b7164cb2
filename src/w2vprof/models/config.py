"""Named wav2vec 2.0 configurations with their *pretraining* hyper-parameters.

Values follow fairseq's pretraining configs (wav2vec2_base_librispeech.yaml, wav2vec2_large_librivox.yaml); see
docs/models.md. torchaudio's builders default to fine-tuning values, so every value is passed explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from w2vprof.errors import BadInput

__all__ = ["ModelConfig", "MODEL_NAMES", "get_config", "frames_for_samples"]

#: (channels, kernel, stride) of the 7 conv blocks: 320x downsampling, 400-sample receptive field.
_WAV2VEC2_CONV = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2


@dataclass(frozen=True)
class ModelConfig:
    name: str
    conv_layers: tuple[tuple[int, int, int], ...]
    extractor_mode: str  # group_norm (GroupNorm on block 0 only) | layer_norm (LayerNorm in every block)
    conv_bias: bool
    embed_dim: int
    num_layers: int
    num_heads: int
    ffn_dim: int
    layer_norm_first: bool
    pos_conv_kernel: int
    pos_conv_groups: int
    final_dim: int  # codevector dimension = dimension of the contrastive space
    codebook_groups: int = 2
    codebook_entries: int = 320
    temperature_start: float = 2.0
    temperature_end: float = 0.5
    temperature_decay: float = 0.999995
    mask_prob: float = 0.65
    mask_length: int = 10
    min_masks: int = 2
    num_negatives: int = 100
    logit_temperature: float = 0.1
    diversity_weight: float = 0.1
    feature_penalty_weight: float = 10.0
    feature_grad_mult: float = 0.1
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    # NB: fairseq base pretrains with layerdrop 0.05. A randomly skipped layer makes one step's cost random,
    # so the profiler measures with layerdrop off (the expected transformer cost is ~5 % lower with it on).
    layer_drop: float = 0.0
    max_crop_samples: int = 250_000
    # AdamW (decoupled weight decay), fairseq's pretraining values.
    lr: float = 5e-4
    adam_betas: tuple[float, float] = (0.9, 0.98)
    adam_eps: float = 1e-6
    weight_decay: float = 0.01

    def with_overrides(self, **changes: Any) -> ModelConfig:
        return replace(self, **changes)


_CONFIGS: dict[str, ModelConfig] = {
    "base": ModelConfig(
        name="base",
        conv_layers=_WAV2VEC2_CONV,
        extractor_mode="group_norm",
        conv_bias=False,
        embed_dim=768,
        num_layers=12,
        num_heads=12,
        ffn_dim=3072,
        layer_norm_first=False,
        pos_conv_kernel=128,
        pos_conv_groups=16,
        final_dim=256,
    ),
    "large": ModelConfig(
        name="large",
        conv_layers=_WAV2VEC2_CONV,
        extractor_mode="layer_norm",
        conv_bias=True,
        embed_dim=1024,
        num_layers=24,
        num_heads=16,
        ffn_dim=4096,
        layer_norm_first=True,
        pos_conv_kernel=128,
        pos_conv_groups=16,
        final_dim=768,
        temperature_end=0.1,
        feature_penalty_weight=0.0,
        feature_grad_mult=1.0,
        dropout=0.0,
        attention_dropout=0.0,
        max_crop_samples=320_000,
    ),
    # For tests and quick runs: the same strides (so the same frame rate and masking) with few channels.
    "tiny": ModelConfig(
        name="tiny",
        conv_layers=((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2,
        extractor_mode="group_norm",
        conv_bias=False,
        embed_dim=64,
        num_layers=2,
        num_heads=4,
        ffn_dim=128,
        layer_norm_first=False,
        pos_conv_kernel=16,
        pos_conv_groups=4,
        final_dim=32,
        codebook_entries=32,
    ),
}

MODEL_NAMES: tuple[str, ...] = tuple(_CONFIGS)


def get_config(name: str) -> ModelConfig:
    try:
        return _CONFIGS[name]
    except KeyError:
        raise BadInput(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}") from None


def frames_for_samples(samples: Any, conv_layers: tuple[tuple[int, int, int], ...] = _WAV2VEC2_CONV) -> Any:
    """Frames the conv stack produces for `samples` input samples (no padding in any conv).

    `samples` is an int, or a numpy integer array of per-utterance lengths (then an array comes back): the
    same arithmetic as torchaudio's length computation, done on the host.
    """
    length = samples
    for _, kernel, stride in conv_layers:
        length = (length - kernel) // stride + 1
    # NB: clamping once at the end equals torchaudio's clamp after every layer: a length <= 0 stays <= 0.
    return length.clip(min=0) if hasattr(length, "clip") else max(length, 0)
