"""Sizes that follow from a model's configuration alone: the bytes of its parameters, and the shortest input its
convolutional feature encoder accepts. Nothing here runs the model or allocates its weights.
"""

from __future__ import annotations

from w2vprof.errors import BadInput
from w2vprof.models.config import frames_for_samples, get_config
from w2vprof.workload.base import SAMPLE_RATE

__all__ = ["FP32_BYTES", "parameter_bytes", "receptive_field_samples", "check_utterance_length"]

#: Bytes of one FP32 number. NB: mixed precision keeps (and a federated client sends) FP32 master weights too.
FP32_BYTES = 4


def parameter_bytes(model: str, bytes_per_parameter: int = FP32_BYTES) -> int:
    """Bytes of one copy of the model's parameters, counted on torch's meta device (no memory, no weights)."""
    from w2vprof.models import build_model
    from w2vprof.models.meta import on_meta

    get_config(model)  # BadInput for an unknown model, before importing or building anything heavy
    with on_meta():  # NB: plain torch.device("meta") would import torch._dynamo to initialise (over a second)
        return sum(p.numel() * bytes_per_parameter for p in build_model(model).parameters())


def receptive_field_samples(model: str) -> int:
    """Input samples one output frame of the conv stack sees: the shortest utterance that gives a frame."""
    field, step = 1, 1
    for _, kernel, stride in get_config(model).conv_layers:
        field += (kernel - 1) * step
        step *= stride
    return field


def check_utterance_length(seconds: float, model: str) -> None:
    """BadInput when an utterance of `seconds` is too short for the model to produce a single frame."""
    samples = round(float(seconds) * SAMPLE_RATE)
    if frames_for_samples(samples, get_config(model).conv_layers) < 1:
        field = receptive_field_samples(model)
        raise BadInput(
            f"an utterance of {float(seconds):g} s is shorter than the {model} conv stack's {field}-sample receptive "
            f"field ({field / SAMPLE_RATE:g} s at {SAMPLE_RATE} Hz)"
        )
