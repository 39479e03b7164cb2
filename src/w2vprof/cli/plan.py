"""`w2vprof plan`: which training recipes fit a device, predicted from measured rows of each (docs/recipes.md)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from w2vprof.paper import USABLE_FRACTION
from w2vprof.records import PRECISIONS

__all__ = ["register"]


def plan_command(
    results: List[Path] = typer.Argument(
        ...,
        help="w2vprof results CSVs with rows of each recipe at two sizes or "
        "more (e.g. sweep --preset recipes --seconds 1,2,4,5.5).",
    ),
    device: Optional[str] = typer.Option(
        None, "--device", help="Target device: a profile name, e.g. 'Jetson Xavier NX' (see devices/profiles.csv)."
    ),
    memory: Optional[str] = typer.Option(
        None, "--memory", help="Target memory instead of (or over) the profile's, e.g. 8GiB."
    ),
    model: str = typer.Option(
        "base", "--model", "-m", help="A model of `w2vprof models` (base, hubert-base, ...) or package.module:factory."
    ),
    objective: str = typer.Option("pretrain", "--objective", help="pretrain or ctc: the rows measured with it."),
    seconds: str = typer.Option(..., "--seconds", "-s", help="Utterance length (s) training must reach."),
    batch: str = typer.Option("4", "--batch", "-b", help="Utterances per batch."),
    precision: str = typer.Option("fp32", "--precision", "-p", help="fp32 or mixed."),
    usable_fraction: str = typer.Option(
        f"{USABLE_FRACTION:g}", "--usable-fraction", help="Share of the memory training may use."
    ),
    devices: Optional[Path] = typer.Option(
        None, "--devices", help="Device profiles CSV, or a folder holding profiles.csv (default: the shipped profiles)."
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table, md, csv or json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Which training recipes fit a device: predicted peak memory and seconds per batch, fastest first.

    Each recipe's predictions are fitted from its own measured rows (listed with each row); docs/recipes.md.
    """
    from w2vprof.analysis.data import load_results
    from w2vprof.analysis.plan import plan_recipes, target_for
    from w2vprof.cli.options import check_format, parse_bytes, parse_name_list, parse_positive_float, parse_positive_int
    from w2vprof.devices.profiles import load_profiles
    from w2vprof.models.registry import get_family
    from w2vprof.report.analysis_views import plan_view
    from w2vprof.report.views import FORMATS, emit

    check_format(fmt, FORMATS)
    get_family(model).check_objective(objective.strip())  # unknown: one line listing the known ones, exit 2
    parse_name_list(precision, "precision", PRECISIONS)
    target = target_for(
        load_profiles(devices),
        device,
        parse_bytes(memory, "--memory") if memory is not None else None,
        model,
        parse_positive_int(batch, "--batch"),
        parse_positive_float(seconds, "--seconds"),
        parse_positive_float(usable_fraction, "--usable-fraction"),
        precision,
        objective.strip(),
    )
    emit(plan_view(plan_recipes(load_results(results), target)), fmt, out)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
