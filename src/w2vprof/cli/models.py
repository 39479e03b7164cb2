"""`w2vprof models`: the models every command's --model takes, with parameters and where each comes from."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from w2vprof.cli.options import check_format

__all__ = ["register"]


def models(
    fmt: str = typer.Option("table", "--format", "-f", help="table, md, csv or json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Every built-in model (wav2vec 2.0, XLS-R, HuBERT, WavLM): parameters for pretraining and CTC, and sources."""
    from w2vprof.models.registry import list_models
    from w2vprof.report.model_views import models_view
    from w2vprof.report.views import FORMATS, emit

    check_format(fmt, FORMATS)
    emit(models_view(list_models(count=True)), fmt, out)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
