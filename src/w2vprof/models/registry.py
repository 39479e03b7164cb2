"""Which family (w2vprof.models.family) builds which model: by its `--model` name, or a built model by its type.

A new family is one ModelFamily subclass and one entry in FAMILIES.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from w2vprof.errors import BadInput
from w2vprof.models.wav2vec2 import WAV2VEC2

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from w2vprof.models.family import LayerSpec, ModelFamily

__all__ = ["FAMILIES", "family_of", "family_of_model", "known_models", "model_layers"]

FAMILIES: tuple[ModelFamily, ...] = (WAV2VEC2,)


def known_models() -> tuple[str, ...]:
    return tuple(name for family in FAMILIES for name in family.model_names)


def family_of(name: str) -> ModelFamily:
    """The family that builds the model called `name`; an unknown name is BadInput listing the known ones."""
    for family in FAMILIES:
        if name in family.model_names:
            return family
    raise BadInput(f"unknown model {name!r}; choose from {', '.join(known_models())}")


def family_of_model(model: nn.Module) -> ModelFamily:
    """The family a built model belongs to (ValueError for a model no family owns: a caller's mistake)."""
    for family in FAMILIES:
        if family.owns(model):
            return family
    raise ValueError(f"no model family owns a {type(model).__name__}")


def model_layers(model: nn.Module) -> list[LayerSpec]:
    """A built model's per-layer map, from its family."""
    return family_of_model(model).layers(model)
