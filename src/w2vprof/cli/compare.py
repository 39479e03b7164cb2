"""`w2vprof compare`: devices side by side, against a baseline device (e.g. the paper's A40)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]

FORMATS = ("table", "md", "csv", "json")


def compare_command(
    results: Optional[list[Path]] = typer.Argument(None, help="w2vprof results CSVs (sweep or profile output)."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Add the paper's devices: 'paper'."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Device to compare against, e.g. 'NVIDIA A40'."),
    seconds: Optional[str] = typer.Option(None, "--seconds", help="Only rows at this utterance length (s)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, md, csv or json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Seconds per batch per device, slowdown vs a baseline, batch-4 gain, mixed-precision speedup, OOMs."""
    from w2vprof.analysis.compare import compare
    from w2vprof.analysis.data import load_results
    from w2vprof.cli.options import parse_positive_float
    from w2vprof.cli.output import check_format, emit
    from w2vprof.report.render import table_markdown, tables_terminal
    from w2vprof.report.tables import comparison_csv, comparison_json, comparison_tables

    check_format(fmt, FORMATS)
    length = parse_positive_float(seconds, "--seconds") if seconds is not None else None
    comparison = compare(load_results(results or [], reference), baseline, length)
    if fmt == "csv":
        text = comparison_csv(comparison)
    elif fmt == "json":
        text = comparison_json(comparison)
    elif fmt == "md":
        text = "\n".join(table_markdown(t) for t in comparison_tables(comparison))
    else:
        text = tables_terminal(comparison_tables(comparison), plain=out is not None)
    emit(text, out)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
