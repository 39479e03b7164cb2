"""The models w2vprof trains: named configurations, the model families (wav2vec 2.0 and XLS-R, HuBERT, WavLM; each
pretrained or fine-tuned with CTC) behind one interface (`ModelFamily`), and a user's own (`package.module:factory`).
"""

from __future__ import annotations

from w2vprof.models.config import MODEL_NAMES, ModelConfig, builtin_config, frames_for_samples, get_config
from w2vprof.models.family import (
    CTC,
    OBJECTIVES,
    PRETRAIN,
    LossOutput,
    ModelFamily,
    ModelOptions,
    OptimizerSettings,
    count_parameters,
    make_options,
)
from w2vprof.models.layers import OBJECTIVE, LayerSpec
from w2vprof.models.registry import get_family, list_models, model_names

__all__ = [
    "CTC",
    "MODEL_NAMES",
    "OBJECTIVE",
    "OBJECTIVES",
    "PRETRAIN",
    "LayerSpec",
    "LossOutput",
    "ModelConfig",
    "ModelFamily",
    "ModelOptions",
    "OptimizerSettings",
    "build_model",
    "builtin_config",
    "count_parameters",
    "frames_for_samples",
    "get_config",
    "get_family",
    "list_models",
    "make_options",
    "model_names",
]


def build_model(name: str, **overrides):
    """Build a randomly initialised wav2vec 2.0 pretraining model (a name in MODEL_NAMES; imports torch on first
    use). Every family, any objective: get_family(name).build(objective, options)."""
    from w2vprof.compat import check_model_support

    check_model_support()  # a torch/torchaudio pair that cannot build it: one line naming both, exit 2
    from w2vprof.models.pretraining import build_model as _build

    return _build(name, **overrides)
