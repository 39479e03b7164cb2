"""wav2vec 2.0 pretraining models: named configurations, the model, the objective."""

from __future__ import annotations

from w2vprof.models.config import MODEL_NAMES, ModelConfig, frames_for_samples, get_config

__all__ = ["MODEL_NAMES", "ModelConfig", "frames_for_samples", "get_config", "build_model"]


def build_model(name: str, **overrides):
    """Build a randomly initialised pretraining model (imports torch on first use)."""
    from w2vprof.compat import check_model_support

    check_model_support()  # a torch/torchaudio pair that cannot build it: one line naming both, exit 2
    from w2vprof.models.pretraining import build_model as _build

    return _build(name, **overrides)
