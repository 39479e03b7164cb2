"""`w2vprof feasibility`, `fl-estimate` and `forecast`: the paper's Sec. 3.3 / 4.1 arithmetic on measurements."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]


def feasibility_command(
    results: list[Path] = typer.Argument(..., help="w2vprof results CSVs with measured memory (e.g. --preset lengths)."),
    devices: Optional[Path] = typer.Option(None, "--devices", help="Device profiles CSV or folder (default: shipped)."),
    usable_fraction: str = typer.Option("0.7", "--usable-fraction", help="Share of a device's memory training may use."),
    batch: str = typer.Option("1,4", "--batch", help="Batch sizes to decide for."),
    seconds: str = typer.Option("5.5", "--seconds", help="Utterance length a device must reach to count as fit."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o"),
) -> None:
    """Fit memory = a + b x (batch x seconds) and say which devices can train which model, and how long a clip."""
    from w2vprof.analysis.data import load_profiles, load_results
    from w2vprof.analysis.estimates import feasibility, fit_memory
    from w2vprof.cli.options import parse_int_list, parse_positive_float
    from w2vprof.cli.output import check_format, emit, records_as_csv, records_as_json
    from w2vprof.report.render import print_feasibility

    check_format(fmt)
    fraction = parse_positive_float(usable_fraction, "--usable-fraction")
    fits = fit_memory(load_results(results))
    rows = feasibility(fits, load_profiles(devices), fraction, tuple(parse_int_list(batch, "--batch")),
                       parse_positive_float(seconds, "--seconds"))
    if fmt == "csv":
        emit(records_as_csv(rows), out)
    elif fmt == "json":
        emit(records_as_json(rows), out)
    else:
        print_feasibility(fits, rows)


def fl_estimate_command(
    results: list[Path] = typer.Argument(None, help="w2vprof results CSVs."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Add the paper's devices: 'paper'."),
    clients: int = typer.Option(10, "--clients"),
    samples_per_client: int = typer.Option(19_500, "--samples-per-client"),
    batch: int = typer.Option(4, "--batch"),
    rounds: int = typer.Option(150, "--rounds"),
    local_epochs: float = typer.Option(1.0, "--local-epochs"),
    clients_per_round: Optional[int] = typer.Option(None, "--clients-per-round"),
    model: str = typer.Option("base", "--model"),
    precision: str = typer.Option("fp32", "--precision"),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="Only rows at this utterance length."),
    bandwidth: Optional[float] = typer.Option(None, "--bandwidth", help="Client link in Mbit/s: adds model transfers."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o"),
) -> None:
    """Per device: one local epoch and the whole federated training (clients train concurrently)."""
    from w2vprof.analysis.data import load_results
    from w2vprof.analysis.estimates import FlSetting, fl_estimate
    from w2vprof.cli.output import check_format, emit, records_as_csv, records_as_json
    from w2vprof.errors import BadInput
    from w2vprof.report.render import print_fl_estimate

    check_format(fmt)
    if bandwidth is not None and bandwidth <= 0:
        raise BadInput(f"--bandwidth must be positive, got {bandwidth:g}")
    setting = FlSetting(clients, samples_per_client, batch, rounds, local_epochs, clients_per_round, model,
                        precision, seconds, bandwidth, _model_bytes(model) if bandwidth else None)
    rows = fl_estimate(load_results(results or [], reference), setting)
    if fmt == "csv":
        emit(records_as_csv(rows), out)
    elif fmt == "json":
        emit(records_as_json(rows), out)
    else:
        print_fl_estimate(setting, rows)


def _model_bytes(model: str) -> int:
    """fp32 size of the model, counted on the meta device (no memory, no weights)."""
    import torch

    from w2vprof.models import build_model, get_config

    get_config(model)
    with torch.device("meta"):
        return sum(p.numel() * 4 for p in build_model(model).parameters())


def forecast_command(
    results: list[Path] = typer.Argument(None, help="w2vprof results CSVs (the paper's devices are always included)."),
    device: str = typer.Option(..., "--device", help="Device to forecast, e.g. 'Jetson Xavier NX'."),
    target: str = typer.Option("NVIDIA A40", "--target", help="Device whose speed it should reach."),
    model: str = typer.Option("base", "--model"),
    batch: int = typer.Option(4, "--batch"),
    precision: str = typer.Option("fp32", "--precision"),
    doubling_months: float = typer.Option(18.0, "--doubling-months", help="Compute doubles every N months."),
    from_year: float = typer.Option(2022.0, "--from-year", help="Year the measurements stand for."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o"),
) -> None:
    """Years until a device's seconds per batch matches the target's under a doubling law."""
    from w2vprof.analysis.data import load_results
    from w2vprof.analysis.estimates import forecast
    from w2vprof.cli.output import check_format, emit, records_as_csv, records_as_json

    check_format(fmt)
    result = forecast(load_results(results or [], "paper"), device, target, model, batch, precision,
                      doubling_months, from_year)
    if fmt == "csv":
        emit(records_as_csv([result]), out)
    elif fmt == "json":
        emit(records_as_json([result]), out)
    else:
        typer.echo(
            f"{result.device} takes {result.device_sec_per_batch:g} s per batch, {result.target} "
            f"{result.target_sec_per_batch:g} s ({result.model}, batch {result.batch}, {result.precision}): "
            f"ratio {result.ratio:.2f}.\n"
            f"Doubling law: compute doubles every {result.doubling_months:g} months, so closing a {result.ratio:.2f}x gap "
            f"takes log2({result.ratio:.2f}) x {result.doubling_months:g} / 12 = {result.years:.1f} years: "
            f"{result.from_year:g} + {result.years:.1f} = {result.year:.1f}."
        )


def register(app: typer.Typer) -> None:
    app.command("feasibility")(feasibility_command)
    app.command("fl-estimate")(fl_estimate_command)
    app.command("forecast")(forecast_command)
