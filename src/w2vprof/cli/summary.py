"""`w2vprof summary`: parameters and inference FLOPs per module group (Table 1 of the paper), for every model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from w2vprof.cli.options import check_format, parse_positive_float, parse_positive_int
from w2vprof.paper import PAPER_SECONDS

__all__ = ["register"]


def summary(
    model: str = typer.Option(
        "base",
        "--model",
        "-m",
        help="A model of `w2vprof models` (base, hubert-base, wavlm-base, xlsr-2b, ...) or package.module:factory.",
    ),
    objective: Optional[str] = typer.Option(
        None, "--objective", help="pretrain or ctc (default: the model's first, pretrain for the built-in models)."
    ),
    seconds: str = typer.Option(f"{PAPER_SECONDS:g}", "--seconds", "-s", help="Utterance length in seconds (16 kHz)."),
    batch: str = typer.Option("1", "--batch", "-b", help="Utterances per batch."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, md, csv or json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
    layers: bool = typer.Option(False, "--layers", help="One row per layer instead of per module group."),
) -> None:
    """Parameters and inference FLOPs (eval mode, forward only, 2 FLOPs per multiply-add) per module, counted from
    shapes on torch's meta device: no weights are allocated, so the billion-parameter models answer too."""
    from w2vprof.models.registry import family_kind, get_family
    from w2vprof.models.size import check_utterance_length
    from w2vprof.report.views import FORMATS, emit

    family = get_family(model)  # unknown model: one line listing the known ones, exit 2, before building anything
    chosen = (objective or family.objectives[0]).strip()
    family.check_objective(chosen)
    seconds_value = parse_positive_float(seconds, "--seconds")
    batch_value = parse_positive_int(batch, "--batch")
    check_format(fmt, FORMATS)
    check_utterance_length(seconds_value, model)

    from w2vprof.measure.summary import summarize
    from w2vprof.report.summary_views import summary_view

    rows = summarize(model, seconds_value, batch_value, per_layer=layers, objective=chosen)
    emit(summary_view(rows, family_kind(family), chosen), fmt, out)


def register(app: typer.Typer) -> None:
    app.command("summary")(summary)
