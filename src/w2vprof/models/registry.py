"""Every model w2vprof knows by name, and a user's own model (`package.module:factory`).

    get_family("hubert-base")                  # a built-in family
    get_family("mymodels.conformer:family")    # imports mymodels.conformer, calls family(): a ModelFamily
    list_models()                              # name, kind, parameters and source of every built-in model

A name that is neither gives one line listing the known names; a factory that cannot be imported or returns
something else gives one line naming the module and what was wrong (BadInput: exit 2).
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from w2vprof.errors import BadInput
from w2vprof.models.config import BUILTIN_NAMES, builtin_config
from w2vprof.models.family import PRETRAIN, ModelFamily, ModelOptions, count_parameters

__all__ = [
    "SOURCES",
    "ModelInfo",
    "builtin_families",
    "family_kind",
    "get_family",
    "list_models",
    "load_factory",
    "model_names",
]

_FAIRSEQ = "github.com/facebookresearch/fairseq"
#: Where each built-in configuration comes from (docs/models.md says which values each source gives).
SOURCES: Dict[str, str] = {
    "tiny": "w2vprof: base's conv strides with 32 channels, 2 layers of 64 (tests and smoke runs)",
    "base": f"wav2vec 2.0 (Baevski et al. 2020), {_FAIRSEQ} wav2vec2_base_librispeech.yaml",
    "large": f"wav2vec 2.0 (Baevski et al. 2020), {_FAIRSEQ} wav2vec2_large_librivox.yaml",
    "xlsr-300m": "XLS-R (Babu et al. 2021): torchaudio.models.wav2vec2_xlsr_300m encoder, wav2vec 2.0 large's head",
    "xlsr-1b": "XLS-R (Babu et al. 2021): torchaudio.models.wav2vec2_xlsr_1b encoder, wav2vec 2.0 large's head",
    "xlsr-2b": "XLS-R (Babu et al. 2021): torchaudio.models.wav2vec2_xlsr_2b encoder, wav2vec 2.0 large's head",
    "hubert-base": "HuBERT (Hsu et al. 2021): torchaudio.models.hubert_pretrain_base",
    "hubert-large": "HuBERT (Hsu et al. 2021): torchaudio.models.hubert_pretrain_large",
    "hubert-xlarge": "HuBERT (Hsu et al. 2021): torchaudio.models.hubert_pretrain_xlarge",
    "wavlm-base": "WavLM (Chen et al. 2022): torchaudio.models.wavlm_base encoder, hubert_pretrain_base's head",
    "wavlm-large": "WavLM (Chen et al. 2022): torchaudio.models.wavlm_large encoder, hubert_pretrain_large's head",
    "hubert-tiny": "w2vprof: tiny's encoder with HuBERT's head (tests and smoke runs)",
    "wavlm-tiny": "w2vprof: tiny's encoder with WavLM's attention and HuBERT's head (tests and smoke runs)",
}
#: How a factory is written: the module to import and the callable in it that returns a ModelFamily.
FACTORY_FORM = "package.module:factory"


def model_names() -> Tuple[str, ...]:
    """Every built-in model, wav2vec 2.0 first."""
    return BUILTIN_NAMES


@functools.lru_cache(maxsize=None)
def builtin_families() -> Dict[str, ModelFamily]:
    from w2vprof.models.families import MaskedPredictionFamily, Wav2Vec2Family

    families: Dict[str, ModelFamily] = {}
    for name in BUILTIN_NAMES:
        config = builtin_config(name)
        kind = Wav2Vec2Family if config.head == "contrastive" else MaskedPredictionFamily
        families[name] = kind(config, SOURCES[name])
    return families


def get_family(name: str) -> ModelFamily:
    """The family of a built-in model, or of a user's `package.module:factory`; BadInput for anything else."""
    name = str(name).strip()
    if ":" in name:
        return load_factory(name)
    found = builtin_families().get(name)
    if found is None:
        raise BadInput(f"unknown model {name!r}; choose from {', '.join(BUILTIN_NAMES)}, or {FACTORY_FORM}")
    return found


def _short(value: object) -> str:
    """The value as one short line (the start of its repr)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def load_factory(spec: str) -> ModelFamily:
    """Import `package.module`, call `factory()` and check it returned a ModelFamily (named `spec` if it has no
    name). The working directory is searched first, as `python -m` would, so a module beside the user is found."""
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name.isidentifier():
        raise BadInput(f"model {spec!r}: a model of your own is written {FACTORY_FORM}")
    module = _import(spec, module_name)
    factory = getattr(module, factory_name, None)
    if factory is None:
        raise BadInput(f"model {spec!r}: module {module_name} has no {factory_name!r}")
    if not callable(factory):
        raise BadInput(
            f"model {spec!r}: {module_name}.{factory_name} is {type(factory).__name__} {_short(factory)}, not callable"
        )
    try:
        family = factory()
    except Exception as exc:  # noqa: BLE001 - the user's code can fail any way: one line, exit 2
        raise BadInput(f"model {spec!r}: {module_name}.{factory_name}() failed: {_one_line(exc)}") from None
    if not isinstance(family, ModelFamily):
        raise BadInput(
            f"model {spec!r}: {module_name}.{factory_name}() returned {type(family).__name__} {_short(family)}, "
            "not a w2vprof.models.ModelFamily"
        )
    if not family.name:
        family.name = spec
    return family


def _import(spec: str, module_name: str) -> object:
    here = os.getcwd()
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - ImportError, or anything the module raises while it loads
        raise BadInput(f"model {spec!r}: cannot import module {module_name}: {_one_line(exc)}") from None
    finally:
        if added:
            sys.path.remove(here)


def _one_line(exc: BaseException) -> str:
    from w2vprof.compat import one_line

    return one_line(exc)


@dataclass(frozen=True)
class ModelInfo:
    """One line of `w2vprof models`."""

    name: str
    kind: str  # wav2vec 2.0 | HuBERT | WavLM (its pretraining objective and encoder)
    objectives: Tuple[str, ...]
    parameters: int  # pretraining model's, counted on the meta device
    ctc_parameters: Optional[int]  # the CTC model's (encoder, three linear blocks, output layer with the default vocab)
    source: str


def family_kind(family: ModelFamily) -> str:
    """wav2vec 2.0, HuBERT or WavLM for a built-in model (by its head and attention); `user` for a factory's."""
    config = getattr(family, "config", None)
    if config is None:
        return "user"
    if config.head == "contrastive":
        return "wav2vec 2.0"
    return "WavLM" if config.relative_attention_buckets else "HuBERT"


def list_models(count: bool = True) -> list[ModelInfo]:
    """Every built-in model, with its parameters counted on the meta device (`count=False`: 0, instantly)."""
    rows = []
    for name, family in builtin_families().items():
        parameters = count_parameters(family, PRETRAIN) if count else 0
        ctc = count_parameters(family, "ctc", ModelOptions()) if count and "ctc" in family.objectives else None
        rows.append(ModelInfo(name, family_kind(family), family.objectives, parameters, ctc, family.source))
    return rows
