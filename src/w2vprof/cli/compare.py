"""`w2vprof compare`: devices side by side, against a baseline device (e.g. the paper's A40)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

__all__ = ["register"]

FORMATS = ("table", "md", "csv", "json")


def compare_command(
    results: Optional[List[Path]] = typer.Argument(
        None, help="w2vprof results CSVs (sweep or profile output); with --layers also layers.csv files."
    ),
    reference: Optional[str] = typer.Option(None, "--reference", help="Add the paper's devices: 'paper'."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Device to compare against, e.g. 'NVIDIA A40'."),
    seconds: Optional[str] = typer.Option(None, "--seconds", help="Only rows at this utterance length (s)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, md, csv or json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
    layers: bool = typer.Option(
        False, "--layers", help="Seconds per layer side by side: which layers slow down most on the slower device."
    ),
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
    if layers:
        emit(layers_text(results or [], reference, baseline, length, fmt, plain=out is not None), out)
        return
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


def layers_text(
    paths: list[Path], reference: Optional[str], baseline: Optional[str], length: Optional[float], fmt: str, plain: bool
) -> str:
    """`compare --layers` in the asked format (w2vprof.analysis.compare.compare_layers)."""
    from w2vprof.analysis.compare import compare_layers, load_layer_sets
    from w2vprof.errors import BadInput
    from w2vprof.report.layer_tables import layer_comparison_csv, layer_comparison_json, layer_comparison_table
    from w2vprof.report.render import table_markdown, tables_terminal

    if reference is not None:
        raise BadInput("--layers compares the layers files of measured devices: --reference does not apply")
    if not paths:
        raise BadInput("--layers needs layers files or results files (from profile, or sweep --layer-repeats)")
    sets, notes = load_layer_sets(paths)
    comparison = compare_layers(sets, length, notes, baseline)
    if fmt == "csv":
        return layer_comparison_csv(comparison)
    if fmt == "json":
        return layer_comparison_json(comparison)
    if fmt == "md":
        return table_markdown(layer_comparison_table(comparison)) + "".join(f"\n{n}\n" for n in comparison.notes)
    return tables_terminal([layer_comparison_table(comparison)], plain=plain, notes=comparison.notes)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
