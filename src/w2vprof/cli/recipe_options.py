"""Training-recipe options shared by `profile` (one value each) and `sweep` (comma lists: every combination), and
the model, objective and its options that both take.

docs/recipes.md explains each option; w2vprof.measure.recipes checks the values and makes the canonical text.
"""

from __future__ import annotations

from itertools import product
from typing import Any, Optional

import typer

CHECKPOINTING_HELP = "Activation checkpointing: none, transformer, cnn or all (every layer up to the transformer's)."
FREEZE_HELP = "Frozen layers: none, cnn (the CNN encoder) or cnn+N (also the first N transformer layers)."
ACCUMULATE_HELP = "Run each batch as K micro-batches with one optimizer step (K divides --batch)."
OPTIMIZER_HELP = "adamw (fairseq's pretraining values), sgd (momentum 0.9) or adafactor."
COMPILE_HELP = "torch.compile the model (compile time in compile_sec, never in the timed steps)."

CHECKPOINTING = typer.Option("none", "--checkpointing", help=CHECKPOINTING_HELP)
FREEZE = typer.Option("none", "--freeze", help=FREEZE_HELP)
ACCUMULATE = typer.Option("1", "--accumulate", help=ACCUMULATE_HELP)
OPTIMIZER = typer.Option("adamw", "--optimizer", help=OPTIMIZER_HELP)
COMPILE = typer.Option(False, "--compile", help=COMPILE_HELP)

MODEL_HELP = "A model of `w2vprof models` (base, hubert-base, wavlm-tiny, ...) or package.module:factory."
OBJECTIVE_HELP = "pretrain (the model's self-supervised objective) or ctc (fine-tuning: three linear layers and CTC)."
OBJECTIVE = typer.Option("pretrain", "--objective", help=OBJECTIVE_HELP)
OBJECTIVE_LIST = typer.Option(None, "--objective", help="Comma list. " + OBJECTIVE_HELP)
VOCAB = typer.Option("32", "--vocab", help="ctc: output classes (characters), the blank included.")
CLUSTERS = typer.Option(
    None, "--clusters", help="HuBERT and WavLM pretraining: k-means classes (default: the model's own, 100 or 500)."
)

#: sweep: comma lists, None = the preset's recipes (or the default recipe).
CHECKPOINTING_LIST = typer.Option(None, "--checkpointing", help="Comma list. " + CHECKPOINTING_HELP)
FREEZE_LIST = typer.Option(None, "--freeze", help="Comma list. " + FREEZE_HELP)
ACCUMULATE_LIST = typer.Option(None, "--accumulate", help="Comma list. " + ACCUMULATE_HELP)
OPTIMIZER_LIST = typer.Option(None, "--optimizer", help="Comma list. " + OPTIMIZER_HELP)


def recipe_text(checkpointing: str, freeze: str, accumulate: str, optimizer: str, compile: bool) -> str:
    """The canonical recipe of one value per option (a SettingError, which cli.main shows as the flag, for a bad
    value)."""
    from w2vprof.measure.recipes import make_recipe

    return make_recipe(checkpointing, freeze, accumulate, optimizer, compile).text


def recipe_texts(
    checkpointing: Optional[str],
    freeze: Optional[str],
    accumulate: Optional[str],
    optimizer: Optional[str],
    compile: bool,
) -> Optional[tuple[str, ...]]:
    """Every combination of the listed values (an option not given keeps its default); None when no recipe option
    was given, so the preset's (or the default) recipes apply."""
    if checkpointing is None and freeze is None and accumulate is None and optimizer is None and not compile:
        return None
    lists = [
        _values(text, default)
        for text, default in ((checkpointing, "none"), (freeze, "none"), (accumulate, "1"), (optimizer, "adamw"))
    ]
    texts = [recipe_text(c, f, a, o, compile) for c, f, a, o in product(*lists)]
    return tuple(dict.fromkeys(texts))


def _values(text: Optional[str], default: str) -> list[str]:
    from w2vprof.errors import BadInput

    if text is None:
        return [default]
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values:
        raise BadInput(f"an empty list where {default!r} or other values belong")
    return values


def check_model(name: str) -> str:
    """`name` if it is a model (built-in or package.module:factory); BadInput listing the known ones if not."""
    from w2vprof.models import get_family

    get_family(name)
    return name.strip()


def objective_settings(objective: str, vocab: str, clusters: Optional[str]) -> dict[str, Any]:
    """--objective, --vocab and --clusters as ProfileConfig fields, checked (SettingError naming the setting)."""
    from w2vprof.models import OBJECTIVES, make_options

    if objective not in OBJECTIVES:
        from w2vprof.errors import SettingError

        raise SettingError.unknown("objective", objective, OBJECTIVES)
    options = make_options(clusters, vocab)
    return {"objective": objective, "vocab": options.vocab, "clusters": options.clusters}


def check_recipe(
    text: str, model: str, batch: int, objective: str = "pretrain", vocab: int = 32, clusters: Optional[int] = None
) -> None:
    """A SettingError (shown as the flag) where the recipe cannot train this model at this batch, or leaves
    nothing of it to train."""
    from w2vprof.measure.recipes import parse_recipe
    from w2vprof.models import get_family, make_options

    recipe = parse_recipe(text)
    recipe.check(model, batch)
    family = get_family(model)
    family.check_objective(objective)
    recipe.check_trains(family, objective, make_options(clusters, vocab))
