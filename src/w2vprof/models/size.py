"""Sizes that follow from a model's configuration alone: the bytes of its parameters, and the shortest input its
convolutional feature encoder accepts. Nothing here runs the model or allocates its weights.

Every model the registry knows answers (built-in names and `package.module:factory`).
"""

from __future__ import annotations

from typing import Optional

from w2vprof.errors import BadInput
from w2vprof.models.family import PRETRAIN, ModelOptions, count_parameters
from w2vprof.models.registry import get_family
from w2vprof.workload.base import SAMPLE_RATE

__all__ = ["FP32_BYTES", "parameter_bytes", "receptive_field_samples", "check_utterance_length"]

#: Bytes of one FP32 number. NB: mixed precision keeps (and a federated client sends) FP32 master weights too.
FP32_BYTES = 4


def parameter_bytes(
    model: str,
    bytes_per_parameter: int = FP32_BYTES,
    objective: str = PRETRAIN,
    options: Optional[ModelOptions] = None,
) -> int:
    """Bytes of one copy of the model's parameters, counted on torch's meta device (no memory, no weights)."""
    family = get_family(model)  # BadInput for an unknown model, before importing or building anything heavy
    family.check_objective(objective)
    # NB: on_meta, not plain torch.device("meta"), which would import torch._dynamo to initialise (over a second)
    return count_parameters(family, objective, options) * bytes_per_parameter


def receptive_field_samples(model: str) -> int:
    """Input samples one output frame of the conv stack sees: the shortest utterance that gives a frame."""
    return get_family(model).receptive_field_samples()


def check_utterance_length(seconds: float, model: str) -> None:
    """BadInput when an utterance of `seconds` is too short for the model to produce a single frame."""
    samples = round(float(seconds) * SAMPLE_RATE)
    field = receptive_field_samples(model)
    if samples < field:
        raise BadInput(
            f"an utterance of {float(seconds):g} s is shorter than the {model} conv stack's {field}-sample receptive "
            f"field ({field / SAMPLE_RATE:g} s at {SAMPLE_RATE} Hz)"
        )
