"""`w2vprof feasibility`, `fl-estimate` and `forecast`: the paper's Sec. 3.3 / 4.1 arithmetic on measurements."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from w2vprof.paper import PAPER_SECONDS, USABLE_FRACTION

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.analysis.fl_estimate import FlSetting
    from w2vprof.records import ResultRecord
    from w2vprof.report.views import View

__all__ = ["register"]


def feasibility_command(
    results: List[Path] = typer.Argument(
        ..., help="w2vprof results CSVs with measured memory (e.g. --preset lengths)."
    ),
    devices: Optional[Path] = typer.Option(
        None, "--devices", help="Device profiles CSV, or a folder holding profiles.csv (default: the shipped profiles)."
    ),
    device: Optional[str] = typer.Option(None, "--device", help="Only these profiles (comma list of names)."),
    usable_fraction: str = typer.Option(
        f"{USABLE_FRACTION:g}", "--usable-fraction", help="Share of a device's memory training may use."
    ),
    batch: str = typer.Option("1,4", "--batch", help="Batch sizes to decide for (comma list)."),
    seconds: str = typer.Option(
        f"{PAPER_SECONDS:g}", "--seconds", help="Utterance length (s) a configuration must reach to fit."
    ),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Only these models (comma list, e.g. base,hubert-base; default: every one)."
    ),
    objective: str = typer.Option("pretrain", "--objective", help="pretrain or ctc: the rows measured with it."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, md, csv or json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Fit memory = a + b x (batch x seconds); say which devices can train which model, and how long a clip."""
    from w2vprof.analysis.data import load_results
    from w2vprof.analysis.feasibility import feasibility, fit_memory
    from w2vprof.cli.options import check_format, parse_int_list, parse_positive_float
    from w2vprof.devices.profiles import load_profiles
    from w2vprof.report.analysis_views import feasibility_view
    from w2vprof.report.views import FORMATS, emit

    check_format(fmt, FORMATS)
    names = [n.strip() for n in device.split(",") if n.strip()] if device else None
    rows = _rows_of_models(load_results(results), model, objective.strip())
    result = feasibility(
        fit_memory(rows, objective.strip()),
        load_profiles(devices),
        parse_positive_float(usable_fraction, "--usable-fraction"),
        tuple(parse_int_list(batch, "--batch")),
        parse_positive_float(seconds, "--seconds"),
        names,
    )
    emit(feasibility_view(result), fmt, out)


def _rows_of_models(rows: list[ResultRecord], models: Optional[str], objective: str) -> list[ResultRecord]:
    """The rows of the models asked for (all if None), each name checked through the model registry, and the
    objective checked against the first of them (SettingError/BadInput: one line, exit 2)."""
    from w2vprof.errors import SettingError
    from w2vprof.models import OBJECTIVES
    from w2vprof.models.registry import get_family

    if objective not in OBJECTIVES:
        raise SettingError.unknown("objective", objective, OBJECTIVES)
    if models is None:
        return rows
    wanted = [name.strip() for name in models.split(",") if name.strip()]
    for name in wanted:
        get_family(name).check_objective(objective)
    return [row for row in rows if row.model in wanted]


#: fl-estimate's options whose help text needs a line of its own.
CLIENTS_PER_ROUND = typer.Option(None, "--clients-per-round", help="Clients sampled per round (default: all).")
BANDWIDTH = typer.Option(
    None, "--bandwidth", help="Client link in Mbit/s each way: adds a model download and upload per round."
)
FLEET = typer.Option(
    None,
    "--fleet",
    help="Fleet CSV (device,count[,availability,uplink_mbps,downlink_mbps]): rounds on this mixed fleet.",
)
DEADLINE = typer.Option(
    None, "--deadline", help="With --fleet: a round closes after S seconds; later updates are lost."
)
OVER_COMMIT = typer.Option(1.0, "--over-commit", help="With --fleet: sample K x F clients, keep the first K updates.")


def fl_estimate_command(
    results: Optional[List[Path]] = typer.Argument(None, help="w2vprof results CSVs."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Add the paper's devices: 'paper'."),
    clients: int = typer.Option(10, "--clients", help="Clients in the federation."),
    samples_per_client: int = typer.Option(19_500, "--samples-per-client", help="Utterances each client holds."),
    batch: int = typer.Option(4, "--batch", help="Local batch size (a measured batch)."),
    rounds: int = typer.Option(150, "--rounds", help="Federated rounds."),
    local_epochs: float = typer.Option(1.0, "--local-epochs", help="Local epochs per round."),
    clients_per_round: Optional[int] = CLIENTS_PER_ROUND,
    model: str = typer.Option("base", "--model"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or mixed."),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="Only rows at this utterance length (s)."),
    bandwidth: Optional[float] = BANDWIDTH,
    fmt: str = typer.Option("table", "--format", "-f", help="table, md, csv or json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
    fleet: Optional[Path] = FLEET,
    deadline: Optional[float] = DEADLINE,
    over_commit: float = OVER_COMMIT,
    seed: int = typer.Option(0, "--seed", help="With --fleet: seed of the Monte Carlo sampling."),
) -> None:
    """Per device: one local epoch and the whole federated training (clients train concurrently)."""
    from w2vprof.analysis.data import load_results
    from w2vprof.analysis.fl_estimate import FlSetting, check_fleet_only, fl_estimate_with_model_bytes
    from w2vprof.cli.options import check_format
    from w2vprof.report.analysis_views import fl_estimate_view
    from w2vprof.report.views import FORMATS, emit

    check_format(fmt, FORMATS)
    setting = FlSetting(
        clients,
        samples_per_client,
        batch,
        rounds,
        local_epochs,
        clients_per_round,
        model,
        precision,
        seconds,
        bandwidth,
    )
    rows = load_results(results or [], reference)
    check_fleet_only(fleet is not None, deadline, over_commit)
    if fleet is None:
        setting, estimates = fl_estimate_with_model_bytes(rows, setting)
        emit(fl_estimate_view(setting, estimates), fmt, out)
    else:  # a mixed fleet: docs/analysis.md, "Fleets"
        emit(_fleet_view(rows, fleet, setting, deadline, over_commit, seed), fmt, out)


def _fleet_view(
    rows: list[ResultRecord],
    fleet: Path,
    setting: FlSetting,
    deadline: Optional[float],
    over_commit: float,
    seed: int,
) -> View:
    """fl-estimate on a mixed fleet (--fleet): rounds on the devices and counts its CSV lists."""
    from w2vprof.analysis.fleet import fl_estimate_fleet
    from w2vprof.analysis.fleet_io import read_fleet
    from w2vprof.report.fleet_views import fleet_view

    result = fl_estimate_fleet(
        rows, read_fleet(fleet, rows), setting, setting.clients_per_round, deadline, over_commit, seed=seed
    )
    return fleet_view(result)


def forecast_command(
    results: Optional[List[Path]] = typer.Argument(
        None, help="w2vprof results CSVs (the paper's devices are always included)."
    ),
    device: str = typer.Option(..., "--device", help="Device to forecast, e.g. 'Jetson Xavier NX'."),
    target: str = typer.Option("NVIDIA A40", "--target", help="Device whose speed it should reach."),
    model: str = typer.Option("base", "--model"),
    batch: int = typer.Option(4, "--batch"),
    precision: str = typer.Option("fp32", "--precision"),
    seconds: Optional[float] = typer.Option(
        None,
        "--seconds",
        help="Utterance length to compare at (default: 5.5 if both have it, else the longest shared).",
    ),
    doubling_months: float = typer.Option(18.0, "--doubling-months", help="Compute doubles every N months."),
    from_year: float = typer.Option(2022.0, "--from-year", help="Year the measurements stand for."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, md, csv or json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Years until a device's seconds per batch matches the target's under a doubling law."""
    from w2vprof.analysis.data import load_results
    from w2vprof.analysis.forecast import forecast
    from w2vprof.cli.options import check_format
    from w2vprof.report.analysis_views import forecast_view
    from w2vprof.report.views import FORMATS, emit

    check_format(fmt, FORMATS)
    result = forecast(
        load_results(results or [], "paper"),
        device,
        target,
        model,
        batch,
        precision,
        doubling_months,
        from_year,
        seconds,
    )
    emit(forecast_view(result), fmt, out)


def register(app: typer.Typer) -> None:
    app.command("feasibility")(feasibility_command)
    app.command("fl-estimate")(fl_estimate_command)
    app.command("forecast")(forecast_command)
