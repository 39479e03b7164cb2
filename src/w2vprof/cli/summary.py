"""`w2vprof summary`: parameters and inference FLOPs per module group (Table 1 of the paper)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from w2vprof.cli.options import parse_positive_float, parse_positive_int

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.report.render import Table

__all__ = ["register"]


def summary(
    model: str = typer.Option("base", "--model", "-m", help="Model: tiny, base or large."),
    seconds: str = typer.Option("5.5", "--seconds", "-s", help="Utterance length in seconds (16 kHz)."),
    batch: str = typer.Option("1", "--batch", "-b", help="Utterances per batch."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
    layers: bool = typer.Option(False, "--layers", help="One row per layer instead of per module group."),
) -> None:
    """Parameters and inference FLOPs (eval mode, forward only, 2 FLOPs per multiply-add) per module."""
    from w2vprof.cli.output import check_format, emit, records_as_csv, records_as_json
    from w2vprof.models import get_config
    from w2vprof.models.size import check_utterance_length

    get_config(model)  # unknown model: one line, exit 2, before building anything
    seconds_value = parse_positive_float(seconds, "--seconds")
    batch_value = parse_positive_int(batch, "--batch")
    check_format(fmt)
    check_utterance_length(seconds_value, model)

    from w2vprof.measure.summary import summarize

    rows = summarize(model, seconds_value, batch_value, per_layer=layers)
    if fmt == "csv":
        emit(records_as_csv(rows), out)
    elif fmt == "json":
        emit(records_as_json(rows), out)
    else:
        from w2vprof.report.render import table_terminal

        emit(table_terminal(summary_table(rows), plain=out is not None), out)


def summary_table(rows) -> Table:
    """The terminal view: params in millions and GFLOPs per module, the total in bold."""
    from w2vprof.report.render import Table

    first = rows[0]
    return Table(
        title=f"wav2vec 2.0 {first.model}: inference cost of {first.seconds:g} s x batch {first.batch}",
        columns=["module", "params (M)", "GFLOPs"],
        rows=[[row.module, f"{row.params / 1e6:.2f}", f"{row.inference_flops / 1e9:.2f}"] for row in rows],
        caption="FLOPs = 2 per multiply-add; attention = QK^T and AV products (not in the paper's Table 1)",
        emphasis=frozenset(i for i, row in enumerate(rows) if row.module == "total"),
    )


def register(app: typer.Typer) -> None:
    app.command("summary")(summary)
