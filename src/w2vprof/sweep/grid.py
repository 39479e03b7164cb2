"""The grid of configurations: presets, explicit flags, and the cheap-first order."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

from w2vprof.errors import SettingError
from w2vprof.measure.engine import ProfileConfig
from w2vprof.models.family import OBJECTIVES, PRETRAIN
from w2vprof.paper import (
    PAPER_BATCH,
    PAPER_MODEL,
    PAPER_PRECISION,
    PAPER_SECONDS,
    TABLE2_BATCHES,
    TABLE2_MODELS,
)
from w2vprof.records import PRECISIONS

__all__ = ["FAMILY_BASE_MODELS", "PRESETS", "GridSpec", "preset_spec", "default_spec", "expand"]


@dataclass(frozen=True)
class GridSpec:
    models: tuple[str, ...]
    seconds: tuple[float, ...]
    batches: tuple[int, ...]
    precisions: tuple[str, ...]
    warmup: int = 1
    repeats: int = 5
    recipes: tuple[str, ...] = ("default",)  # training recipes, canonical short forms (w2vprof.measure.recipes)
    objectives: tuple[str, ...] = (PRETRAIN,)  # what each configuration trains (w2vprof.models.family.OBJECTIVES)


#: `--preset recipes`: each technique alone, then the combinations that go furthest over the memory wall
#: (docs/recipes.md).
RECIPES_PRESET = (
    "default",
    "ckpt=transformer",
    "ckpt=cnn",
    "ckpt=all",
    "freeze=cnn",
    "freeze=cnn+6",
    "accum=2",
    "accum=4",
    "optim=sgd",
    "optim=adafactor",
    "compile",
    "ckpt=transformer,freeze=cnn",
    "ckpt=transformer,accum=2",
    "ckpt=transformer,freeze=cnn,optim=adafactor",
    "ckpt=all,accum=4,optim=adafactor",
)


#: `--preset models`: each built-in family's base model (wav2vec 2.0, HuBERT, WavLM).
FAMILY_BASE_MODELS = ("base", "hubert-base", "wavlm-base")

PRESETS: dict[str, GridSpec] = {
    # Table 2's protocol.
    "paper": GridSpec(TABLE2_MODELS, (PAPER_SECONDS,), TABLE2_BATCHES, PRECISIONS),
    # Fig. 3 / Fig. 4: memory and FLOPs against utterance length at batch 4.
    "lengths": GridSpec(TABLE2_MODELS, (1, 2, 3, 4, 5, 6, 8, 10, 12, 15), (PAPER_BATCH,), PRECISIONS),
    # A minute or two on a laptop CPU.
    "quick": GridSpec(("base",), (1, 2, 4), (1,), ("fp32",), warmup=1, repeats=3),
    # What each training recipe saves and costs at the paper's configuration (base, batch 4, 5.5 s, FP32).
    "recipes": GridSpec((PAPER_MODEL,), (PAPER_SECONDS,), (PAPER_BATCH,), (PAPER_PRECISION,), recipes=RECIPES_PRESET),
    # Each family's base model at the paper's configuration, pretrained and fine-tuned with CTC.
    "models": GridSpec(FAMILY_BASE_MODELS, (PAPER_SECONDS,), (PAPER_BATCH,), (PAPER_PRECISION,), objectives=OBJECTIVES),
}


def preset_spec(name: str) -> GridSpec:
    try:
        return PRESETS[name]
    except KeyError:
        raise SettingError.unknown("preset", name, PRESETS) from None


def default_spec(device: str, bf16_native: Optional[bool] = None) -> GridSpec:
    """`w2vprof sweep` with no grid flags: Table 2 on a GPU; base at 5.5 s, batch 1 and 4, on a CPU.

    Mixed precision joins on a CPU only with native bfloat16 (AVX512-BF16/AMX, Arm BF16): there base trains
    faster in bf16 (seen here: 0.84 s vs 2.10 s a step, batch 1, 5.5 s); without it torch emulates bf16, which
    can be many times slower than FP32 and would turn a two-minute default into hours.
    """
    if device in ("cuda", "mps"):
        return PRESETS["paper"]
    return GridSpec((PAPER_MODEL,), (PAPER_SECONDS,), TABLE2_BATCHES, PRECISIONS if bf16_native else ("fp32",))


def expand(spec: GridSpec, device: str, common: dict[str, Any]) -> list[ProfileConfig]:
    """Every configuration of the grid, cheap first within each model (so pruning and the ETA work early).

    `common` holds the settings every configuration shares (threads, seed, vocab, clusters, the workload).
    BadInput before anything runs for a recipe that cannot apply (micro-batches that do not divide a batch, more
    frozen layers than a model has, nothing left to train) or an objective a model does not offer."""
    recipes = _check_grid(spec, common)
    configs = []
    for model in spec.models:
        per_model = [
            ProfileConfig(
                model=model,
                batch=batch,
                seconds=seconds,
                precision=precision,
                device=device,
                warmup=spec.warmup,
                repeats=spec.repeats,
                recipe=recipe,
                objective=objective,
                **common,
            )
            for objective in spec.objectives
            for seconds in spec.seconds
            for batch in spec.batches
            for precision in spec.precisions
            for recipe in recipes
        ]
        per_model.sort(key=lambda c: (c.batch * c.seconds, c.batch, c.precision != "fp32"))
        configs.extend(per_model)
    return configs


def _check_grid(spec: GridSpec, common: dict[str, Any]) -> list[str]:
    """The grid's recipes in their canonical text, every (model, objective, recipe, batch) checked."""
    from w2vprof.measure.recipes import parse_recipe
    from w2vprof.models import get_family, make_options

    recipes = [parse_recipe(text) for text in spec.recipes]
    options = make_options(common.get("clusters"), common.get("vocab", 32))
    for model in spec.models:
        family = get_family(model)
        family.check_support()  # HuBERT's and WavLM's builders too, not only wav2vec 2.0's
        for objective in spec.objectives:
            family.check_objective(objective)
            for recipe in recipes:
                recipe.check_trains(family, objective, options)
        for recipe in recipes:
            for batch in spec.batches:
                recipe.check(model, batch)
    return [recipe.text for recipe in recipes]


def with_overrides(spec: GridSpec, **changes: Any) -> GridSpec:
    return replace(spec, **{k: v for k, v in changes.items() if v is not None})
