"""Named model configurations with their *pretraining* hyper-parameters.

wav2vec 2.0 values follow fairseq's pretraining configs (wav2vec2_base_librispeech.yaml,
wav2vec2_large_librivox.yaml); XLS-R takes torchaudio's encoder configurations (wav2vec2_xlsr_300m/1b/2b) with
large's pretraining head. HuBERT and WavLM (`head="cluster"`) take torchaudio's builders' values
(hubert_pretrain_base/large/xlarge, wavlm_base/large). See docs/models.md. torchaudio's builders default to
fine-tuning values, so every value is passed explicitly.

`get_config` answers for the wav2vec 2.0 pretraining models (MODEL_NAMES), which the whole measurement path runs
today; `builtin_config` for every built-in model, HuBERT and WavLM included (w2vprof.models.registry).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

from w2vprof.errors import BadInput

__all__ = ["ModelConfig", "MODEL_NAMES", "BUILTIN_NAMES", "builtin_config", "get_config", "frames_for_samples"]

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
    final_dim: int  # codevector dimension = dimension of the contrastive space (cluster head: of the label space)
    head: str = "contrastive"  # contrastive (wav2vec 2.0's quantizer and distractors) | cluster (HuBERT's)
    clusters: int = 0  # cluster head: k-means classes the targets come from (0 for the contrastive head)
    # > 0: WavLM's gated relative position bias (torchaudio.models.wavlm_model) with this many buckets
    relative_attention_buckets: int = 0
    relative_attention_max_distance: int = 0
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
    unmasked_weight: float = 0.0  # cluster head: weight of the unmasked frames' loss (fairseq pred_nomask_weight)
    ctc_neurons: int = 1024  # CTC fine-tuning: width of the three linear blocks (SpeechBrain's dnn_neurons)
    feature_grad_mult: float = 0.1
    dropout: float = 0.1
    projection_dropout: Optional[float] = None  # after the feature projection (fairseq dropout_input); None: dropout
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

    @property
    def input_dropout(self) -> float:
        """Dropout after the feature projection (torchaudio's encoder_projection_dropout)."""
        return self.dropout if self.projection_dropout is None else self.projection_dropout


#: The encoders of the base / large / tiny sizes: fairseq's wav2vec 2.0 base and large, as torchaudio's builders
#: (wav2vec2_*, hubert_pretrain_*, wavlm_*) have them; tiny keeps base's strides (the same frame rate and masking)
#: with few channels, for tests and quick runs.
_BASE_ENCODER: dict[str, Any] = dict(
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
)
_LARGE_ENCODER: dict[str, Any] = dict(
    _BASE_ENCODER,
    extractor_mode="layer_norm",
    embed_dim=1024,
    num_layers=24,
    num_heads=16,
    ffn_dim=4096,
    layer_norm_first=True,
    final_dim=768,
    feature_grad_mult=1.0,
)
_TINY_ENCODER: dict[str, Any] = dict(
    _BASE_ENCODER,
    conv_layers=((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2,
    embed_dim=64,
    num_layers=2,
    num_heads=4,
    ffn_dim=128,
    pos_conv_kernel=16,
    pos_conv_groups=4,
    final_dim=32,
    ctc_neurons=64,
)
#: wav2vec 2.0 large (wav2vec2_large_librivox.yaml; torchaudio's wav2vec2_large_lv60k layout: conv bias), which
#: XLS-R keeps: its Gumbel schedule, no feature penalty, no dropout.
_LARGE_WAV2VEC2: dict[str, Any] = dict(
    _LARGE_ENCODER,
    conv_bias=True,
    temperature_end=0.1,
    feature_penalty_weight=0.0,
    dropout=0.0,
    attention_dropout=0.0,
    max_crop_samples=320_000,
)

_CONFIGS: dict[str, ModelConfig] = {
    "base": ModelConfig(name="base", **_BASE_ENCODER),
    "large": ModelConfig(name="large", **_LARGE_WAV2VEC2),
    # XLS-R (Babu et al. 2021): torchaudio's wav2vec2_xlsr_300m/1b/2b encoders (their dropouts: none in the
    # encoder, 0.1 after the feature projection of 1b and 2b); the pretraining head is large's.
    "xlsr-300m": ModelConfig(name="xlsr-300m", **_LARGE_WAV2VEC2, projection_dropout=0.0),
    "xlsr-1b": ModelConfig(
        name="xlsr-1b", **dict(_LARGE_WAV2VEC2, embed_dim=1280, num_layers=48, ffn_dim=5120), projection_dropout=0.1
    ),
    "xlsr-2b": ModelConfig(
        name="xlsr-2b", **dict(_LARGE_WAV2VEC2, embed_dim=1920, num_layers=48, ffn_dim=7680), projection_dropout=0.1
    ),
    "tiny": ModelConfig(name="tiny", **_TINY_ENCODER, codebook_entries=32),
}

MODEL_NAMES: tuple[str, ...] = tuple(_CONFIGS)

#: HuBERT's masked prediction of cluster ids: fairseq's hubert pretraining values (mask_prob 0.8, span 10, logit
#: temperature 0.1, feature penalty weight 10, unmasked frames weighted 0), as torchaudio's builders pass them.
_CLUSTER_HEAD: dict[str, Any] = dict(head="cluster", mask_prob=0.8, feature_penalty_weight=10.0, unmasked_weight=0.0)
#: WavLM's gated relative position bias: torchaudio's wavlm_base/wavlm_large values.
_WAVLM_ATTENTION: dict[str, Any] = dict(relative_attention_buckets=320, relative_attention_max_distance=800)
#: Masked prediction of cluster ids (head="cluster"); `clusters` is the default of `--clusters`.
_CLUSTER_CONFIGS: dict[str, ModelConfig] = {
    # torchaudio.models.hubert_pretrain_base: 100 clusters (the first iteration, MFCC k-means), dropouts 0.1
    "hubert-base": ModelConfig(name="hubert-base", **_BASE_ENCODER, **_CLUSTER_HEAD, clusters=100),
    # hubert_pretrain_large / _xlarge: 500 clusters, no dropout, feature_grad_mult None (1.0)
    "hubert-large": ModelConfig(
        name="hubert-large", **_LARGE_ENCODER, **_CLUSTER_HEAD, clusters=500, dropout=0.0, attention_dropout=0.0
    ),
    "hubert-xlarge": ModelConfig(
        name="hubert-xlarge",
        **dict(_LARGE_ENCODER, embed_dim=1280, num_layers=48, ffn_dim=5120, final_dim=1024),
        **_CLUSTER_HEAD,
        clusters=500,
        dropout=0.0,
        attention_dropout=0.0,
    ),
    # torchaudio.models.wavlm_base / wavlm_large encoders (their dropouts) with HuBERT's head of the same size
    "wavlm-base": ModelConfig(
        name="wavlm-base", **_BASE_ENCODER, **_CLUSTER_HEAD, **_WAVLM_ATTENTION, clusters=500, activation_dropout=0.1
    ),
    "wavlm-large": ModelConfig(name="wavlm-large", **_LARGE_ENCODER, **_CLUSTER_HEAD, **_WAVLM_ATTENTION, clusters=500),
    # For tests and quick runs, as `tiny`.
    "hubert-tiny": ModelConfig(name="hubert-tiny", **_TINY_ENCODER, **_CLUSTER_HEAD, clusters=100),
    "wavlm-tiny": ModelConfig(name="wavlm-tiny", **_TINY_ENCODER, **_CLUSTER_HEAD, **_WAVLM_ATTENTION, clusters=100),
}
#: Every built-in configuration, wav2vec 2.0 first.
BUILTIN_NAMES: tuple[str, ...] = MODEL_NAMES + tuple(_CLUSTER_CONFIGS)


def get_config(name: str) -> ModelConfig:
    try:
        return _CONFIGS[name]
    except KeyError:
        raise BadInput(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}") from None


def builtin_config(name: str) -> ModelConfig:
    """The configuration of any built-in model (wav2vec 2.0, XLS-R, HuBERT, WavLM)."""
    found = _CONFIGS.get(name) or _CLUSTER_CONFIGS.get(name)
    if found is None:
        raise BadInput(f"unknown model {name!r}; choose from {', '.join(BUILTIN_NAMES)}")
    return found


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
