"""`w2vprof summary`: parameters and inference FLOPs per module group (Table 1 of the paper)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from w2vprof.cli.options import parse_positive_float, parse_positive_int

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

    get_config(model)  # unknown model: one line, exit 2, before building anything
    seconds_value = parse_positive_float(seconds, "--seconds")
    batch_value = parse_positive_int(batch, "--batch")
    check_format(fmt)
    _check_long_enough(seconds_value)

    from w2vprof.measure.summary import summarize

    rows = summarize(model, seconds_value, batch_value, per_layer=layers)
    if fmt == "csv":
        emit(records_as_csv(rows), out)
    elif fmt == "json":
        emit(records_as_json(rows), out)
    else:
        emit(_render_table(rows), out) if out else _print_table(rows)


def _check_long_enough(seconds: float) -> None:
    from w2vprof.errors import BadInput
    from w2vprof.models.config import frames_for_samples

    if frames_for_samples(int(round(seconds * 16000))) < 1:
        raise BadInput(f"--seconds {seconds:g} is shorter than the conv stack's 400-sample receptive field (0.025 s)")


def _table(rows):
    from rich.table import Table

    first = rows[0]
    table = Table(
        title=f"wav2vec 2.0 {first.model}: inference cost of {first.seconds:g} s x batch {first.batch}",
        caption="FLOPs = 2 per multiply-add; attention = QK^T and AV products (not in the paper's Table 1)",
    )
    table.add_column("module")
    table.add_column("params (M)", justify="right")
    table.add_column("GFLOPs", justify="right")
    for row in rows:
        style = "bold" if row.module == "total" else None
        table.add_row(row.module, f"{row.params / 1e6:.2f}", f"{row.inference_flops / 1e9:.2f}", style=style)
    return table


def _print_table(rows) -> None:
    from rich.console import Console

    Console().print(_table(rows))


def _render_table(rows) -> str:
    import io

    from rich.console import Console

    console = Console(record=True, width=100, file=io.StringIO())  # render only: nothing goes to the terminal
    console.print(_table(rows))
    return console.export_text()


def register(app: typer.Typer) -> None:
    app.command("summary")(summary)
