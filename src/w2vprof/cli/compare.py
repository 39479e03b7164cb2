"""`w2vprof compare`: devices side by side, against a baseline device (e.g. the paper's A40)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]

FORMATS = ("table", "md", "csv", "json")


def compare_command(
    results: list[Path] = typer.Argument(None, help="w2vprof results CSVs (sweep or profile output)."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Add the paper's devices: 'paper'."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Device to compare against, e.g. 'NVIDIA A40'."),
    seconds: Optional[str] = typer.Option(None, "--seconds", help="Only rows at this utterance length."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, md, csv or json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Seconds per batch per device, slowdown vs a baseline, batch-4 gain, mixed-precision speedup, OOMs."""
    from w2vprof.analysis.compare import compare
    from w2vprof.analysis.data import load_results
    from w2vprof.cli.options import parse_positive_float
    from w2vprof.cli.output import check_format, emit
    from w2vprof.report.render import comparison_csv, comparison_json, comparison_markdown, print_comparison

    check_format(fmt, FORMATS)
    rows = load_results(results or [], reference)
    comparison = compare(rows, baseline, parse_positive_float(seconds, "--seconds") if seconds else None)
    if fmt == "csv":
        emit(comparison_csv(comparison), out)
    elif fmt == "json":
        emit(comparison_json(comparison), out)
    elif fmt == "md":
        emit(comparison_markdown(comparison), out)
    else:
        print_comparison(comparison)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
