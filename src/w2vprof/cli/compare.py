"""`w2vprof compare`: devices side by side, against a baseline device (e.g. the paper's A40)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.report.views import View

__all__ = ["register"]


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
    """Seconds per batch per device, slowdown vs a baseline, batch-4 gain, mixed-precision speedup, OOMs; with
    several models (or objectives) in the results, the models side by side at the paper's configuration."""
    from w2vprof.cli.options import check_format, parse_positive_float
    from w2vprof.report.views import FORMATS, emit

    check_format(fmt, FORMATS)
    length = parse_positive_float(seconds, "--seconds") if seconds is not None else None
    if layers:
        emit(layers_view(results or [], reference, baseline, length), fmt, out)
    else:
        emit(devices_view(results or [], reference, baseline, length), fmt, out)


def devices_view(paths: list[Path], reference: Optional[str], baseline: Optional[str], length: Optional[float]) -> View:
    """`compare`: the devices side by side, and the models side by side where the results hold several."""
    from w2vprof.analysis.compare import compare
    from w2vprof.analysis.data import load_results
    from w2vprof.records import length_key
    from w2vprof.report.compare_views import compare_view
    from w2vprof.report.model_comparison import add_models_table

    rows = load_results(paths, reference)
    view = compare_view(compare(rows, baseline, length))
    at_length = [r for r in rows if length is None or length_key(r.seconds) == length_key(length)]
    return add_models_table(view, at_length)


def layers_view(paths: list[Path], reference: Optional[str], baseline: Optional[str], length: Optional[float]) -> View:
    """`compare --layers` (w2vprof.analysis.compare.compare_layers)."""
    from w2vprof.analysis.compare import compare_layers, load_layer_sets
    from w2vprof.errors import BadInput
    from w2vprof.report.compare_views import layer_comparison_view

    if reference is not None:
        raise BadInput("--layers compares the layers files of measured devices: --reference does not apply")
    if not paths:
        raise BadInput("--layers needs layers files or results files (from profile, or sweep --layer-repeats)")
    sets, notes = load_layer_sets(paths)
    return layer_comparison_view(compare_layers(sets, length, notes, baseline))


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
