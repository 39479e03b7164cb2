"""`w2vprof fl`: federated wav2vec 2.0 pretraining on Flower, simulated here or deployed on devices.

    w2vprof fl simulate       Flower's simulation engine on this machine (one virtual SuperNode per client)
    w2vprof fl deploy-config  the Flower app and the commands for a SuperLink and one SuperNode per device
    w2vprof fl deploy-local   that deployment on 127.0.0.1 (SuperLink + SuperNodes + flwr run), then stopped
    w2vprof fl report         plots (validation loss per round, per-client cost) and a profile's prediction

flwr and torch are imported inside the commands: `w2vprof --help` stays instant and works without the extra.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

__all__ = ["register"]

fl_app = typer.Typer(
    help="Federated pretraining on Flower (needs pip install 'w2vprof\\[fl]'): simulate, deploy, report.",
    no_args_is_help=True,
)

Command = Callable[..., None]

#: Options every command that starts a run takes (name: type, option), handed on unchanged to FlSettings.
TRAINING_OPTIONS: dict[str, tuple[type, Any]] = {
    "model": (str, typer.Option("tiny", "--model", "-m", help="tiny, base or large.")),
    "rounds": (int, typer.Option(20, "--rounds", help="Federated rounds.")),
    "clients_per_round": (int, typer.Option(0, "--clients-per-round", help="Clients sampled each round (0: all).")),
    "aggregation": (
        str,
        typer.Option("fedavg", "--aggregation", help="fedavg (weight = examples) or loss (from the training loss)."),
    ),
    "loss_weighting": (
        str,
        typer.Option(
            "exp", "--loss-weighting", help="With --aggregation loss: exp (exp(-loss/T)) or inverse (1/loss)."
        ),
    ),
    "temperature": (float, typer.Option(1.0, "--temperature", help="T of exp(-loss/T).")),
    "local_epochs": (
        int,
        typer.Option(1, "--local-epochs", help="Passes over its partition each client makes per round."),
    ),
    "batch": (int, typer.Option(4, "--batch", "-b", help="Utterances per local batch.")),
    "lr": (float, typer.Option(0.0, "--lr", help="AdamW learning rate (0: the model's pretraining value, 5e-4).")),
    "max_seconds": (
        float,
        typer.Option(15.0, "--max-seconds", help="Crop longer utterances to a random window this long."),
    ),
    "validation_utterances": (
        int,
        typer.Option(16, "--validation-utterances", help="Held-out utterances scored each round."),
    ),
    "device": (
        str,
        typer.Option("cpu", "--device", help="cpu, cuda or mps: where clients train and the server validates."),
    ),
    "precision": (str, typer.Option("fp32", "--precision", "-p", help="fp32 or mixed.")),
    "threads": (
        int,
        typer.Option(0, "--threads", help="torch threads per client (0: cores / --parallel in simulation)."),
    ),
    "seed": (int, typer.Option(0, "--seed", help="Seed of weights, sampling, data order, masks.")),
    "round_timeout": (float, typer.Option(3600.0, "--round-timeout", help="Seconds to wait for a round's replies.")),
}


#: Where a run's data comes from, for the commands that find or generate it here (simulate, deploy-local).
DATA_OPTIONS: dict[str, tuple[type, Any]] = {
    "partitions": (
        str,
        typer.Option(
            "synthetic",
            "--partitions",
            help="A `w2vprof partition` folder (client i: its i-th manifest), or synthetic "
            "(generate a speech corpus, one speaker per client).",
        ),
    ),
    "clips_dir": (
        str,
        typer.Option("", "--clips-dir", help="Where the manifests' clips are (default: clips/ beside or above them)."),
    ),
    "validation": (
        str,
        typer.Option(
            "", "--validation", help="Held-out manifest or audio folder (default: heldout.tsv in --partitions)."
        ),
    ),
    "utterances_per_client": (
        int,
        typer.Option(8, "--utterances-per-client", help="Synthetic partitions: utterances per client."),
    ),
}


def evaluated_signature(command: Command) -> inspect.Signature:
    """The command's signature with its annotation strings evaluated: inspect.signature(eval_str=True), which
    is Python 3.10+ (`w2vprof` builds this group on every start, also on Python 3.8)."""
    hints = typing.get_type_hints(command)
    signature = inspect.signature(command)
    return signature.replace(
        parameters=[p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()]
    )


def shared_options(group: str, options: dict[str, tuple[Any, Any]]) -> Callable[[Command], Command]:
    """The command gets `options` as well as its own; they reach it together as one dict argument named `group`.

    Typer reads a command's options from its signature, so the wrapper's signature is the command's own
    parameters (less `group`) followed by the shared ones: each option written once, offered by every command.
    """

    def decorate(command: Command) -> Command:
        own = [p for p in evaluated_signature(command).parameters.values() if p.name != group]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
            for name, (kind, option) in options.items()
        ]

        def run_command(**values: Any) -> None:
            command(**{group: {name: values.pop(name) for name in options}}, **values)

        run_command.__signature__ = inspect.Signature(own + added)  # type: ignore[attr-defined]
        run_command.__name__, run_command.__doc__ = command.__name__, command.__doc__
        return run_command

    return decorate


#: `fl simulate` on a fleet: each client stands for a measured device (docs/federated.md, "A simulated fleet").
FLEET_OPTIONS: dict[str, tuple[Any, Any]] = {  # Any: Optional[...] is a typing form, not a type
    "results": (
        Optional[List[Path]],
        typer.Argument(
            None, help="With --fleet: results CSVs that measured the fleet's devices at this model, batch, precision."
        ),
    ),
    "fleet": (
        Optional[Path],
        typer.Option(
            None,
            "--fleet",
            help="Fleet CSV (device,count[,availability,uplink_mbps,downlink_mbps]): each client stands for one "
            "of its devices; rounds also get their virtual time on the fleet.",
        ),
    ),
    "deadline": (
        Optional[float],
        typer.Option(
            None, "--deadline", help="With --fleet: a client whose virtual seconds pass S is left out of its round."
        ),
    ),
    "seconds": (
        Optional[float],
        typer.Option(
            None,
            "--seconds",
            help="With --fleet: utterance length of the rows that price a batch (default: as fl-estimate --fleet).",
        ),
    ),
}

#: The option groups a run command can take, by the name of the argument that receives them.
OPTION_GROUPS = {"training": TRAINING_OPTIONS, "data": DATA_OPTIONS, "fleet": FLEET_OPTIONS}


def run_command(name: str, *groups: str) -> Callable[[Command], Command]:
    """Register an `fl` command that takes the shared option `groups` (each as one dict argument)."""

    def register_command(command: Command) -> Command:
        for group in groups:
            command = shared_options(group, OPTION_GROUPS[group])(command)
        return fl_app.command(name)(command)

    return register_command


def _settings(**values):
    from w2vprof.fl.settings import FlSettings

    return FlSettings(**values)


def _print_round(record) -> None:
    parts = [f"round {record.round:>3}", f"validation loss {record.validation_loss:.4f}"]
    if record.round:
        train = "-" if record.train_loss is None else f"{record.train_loss:.4f}"
        parts += [f"train loss {train}", f"{record.participants} clients", f"{record.round_sec:.1f} s"]
        if record.failures:
            parts.append(f"{record.failures} failed")
        parts += _fleet_parts(record)
    typer.echo("  ".join(parts))


def _fleet_parts(record) -> list[str]:
    """A fleet run's round: its virtual time on the fleet and the clients left out, per cause."""
    from w2vprof.fl.records import DROP_CAUSES

    if record.dropped_memory is None:  # not a fleet run
        return []
    virtual = "-" if record.virtual_round_sec is None else f"{record.virtual_round_sec:,.1f} s"
    dropped = [f"{getattr(record, f'dropped_{cause}')} {cause}" for cause in DROP_CAUSES]
    return [f"on the fleet {virtual}", "left out: " + ", ".join(d for d in dropped if not d.startswith("0 "))]


@run_command("simulate", "training", "data", "fleet")
def simulate_command(
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Folder for rounds.csv, clients.csv, run.json (and a generated corpus).",
    ),
    clients: int = typer.Option(
        10,
        "--clients",
        help="Clients (virtual SuperNodes); a partitions folder needs at least this many.",
    ),
    corpus_engine: str = typer.Option(
        "auto",
        "--corpus-engine",
        help="Synthetic partitions: auto, espeak or synthetic.",
    ),
    parallel: int = typer.Option(
        1,
        "--parallel",
        help="Clients training at once (1: each alone with every core, honest seconds).",
    ),
    verbose: bool = typer.Option(False, "--verbose", help="Show Flower's and Ray's own logs."),
    *,
    training: dict[str, Any],
    data: dict[str, Any],
    fleet: dict[str, Any],
) -> None:
    """Train federated on this machine with Flower's simulation engine; every client measured every round."""
    from w2vprof.errors import SettingError
    from w2vprof.fl.records import check_new_run_folder

    check_new_run_folder(out)
    if parallel < 1:
        raise SettingError("parallel", f"must be at least 1, got {parallel}")
    settings = _settings(clients=clients, out_dir=str(out.resolve()), **data, **training)
    fleet_options = _fleet_options(**fleet)
    from w2vprof.fl.simulate import SimulationOptions, simulate
    from w2vprof.models.registry import get_family

    get_family(settings.model).check_support()  # before Ray starts clients: a broken pair is one line, exit 2
    folder = simulate(
        settings,
        SimulationOptions(parallel=parallel, verbose=verbose),
        on_round=_print_round,
        corpus_engine=corpus_engine,
        fleet=fleet_options,
    )
    typer.echo(f"wrote {folder / 'rounds.csv'} and {folder / 'clients.csv'}")


def _fleet_options(fleet: Optional[Path], results, deadline: Optional[float], seconds: Optional[float]):
    from w2vprof.fl.virtual_fleet import fleet_options

    paths = [str(path) for path in results or ()]
    return fleet_options(None if fleet is None else str(fleet), paths, deadline, seconds)


def _deploy_settings(nodes, validation: str, **values):
    from w2vprof.fl.deploy import deployment_settings

    return deployment_settings(_settings(clients=max(1, len(nodes)), **values), nodes, validation)


def _warn_insecure(address: str) -> None:
    from w2vprof.fl.deploy import INSECURE_WARNING

    typer.echo("w2vprof: warning: " + INSECURE_WARNING.format(address=address), err=True)


@run_command("deploy-config", "training")
def deploy_config_command(
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Folder for the Flower app, FLWR_HOME, keys, commands.sh and results/ (on the SuperLink machine).",
    ),
    superlink: str = typer.Option(
        ...,
        "--superlink",
        help="HOST:PORT devices reach the SuperLink at (e.g. 192.168.1.10:9093).",
    ),
    node: List[str] = typer.Option(
        ...,
        "--node",
        help="NAME=PARTITION_PATH[,CLIPS_DIR] of one device (paths on that device); repeat per device.",
    ),
    validation: str = typer.Option(
        ...,
        "--validation",
        help="Held-out manifest or audio folder on the SuperLink machine.",
    ),
    tls_name: Optional[List[str]] = typer.Option(
        None,
        "--tls-name",
        help="Another host name or address the SuperLink is reached at (its certificate names it); repeatable.",
    ),
    new_keys: bool = typer.Option(
        False,
        "--new-keys",
        help="Make a new CA, certificate and device keys even if OUT holds some (every device "
        "then needs its new files).",
    ),
    insecure: bool = typer.Option(
        False,
        "--insecure",
        help="No TLS and no SuperNode authentication: any machine that reaches the SuperLink can "
        "join (trusted lab network only).",
    ),
    *,
    training: dict[str, Any],
) -> None:
    """Write the Flower app, keys and commands: a SuperLink, registered SuperNodes (one per device), flwr run."""
    from w2vprof.fl.deploy import parse_node, write_deployment

    nodes = [parse_node(text) for text in node]
    settings = _deploy_settings(nodes, validation, **training)
    plan = write_deployment(
        settings, out, superlink, nodes, insecure=insecure, new_keys=new_keys, tls_names=tuple(tls_name or ())
    )
    _print_deployment(plan, insecure)


def _print_deployment(plan, insecure: bool) -> None:
    """The commands to run, then what was written (and the warning an insecure deployment deserves)."""
    if insecure:
        _warn_insecure(plan.address)
    typer.echo((plan.out_dir / "commands.sh").read_text(), nl=False)
    written = [f"{plan.app_dir}/pyproject.toml", f"{plan.flwr_home}/config.toml", f"{plan.out_dir}/commands.sh"]
    if plan.keys is not None:
        written.append(f"keys in {plan.keys.tls.ca_cert.parent} and {plan.out_dir / 'supernode-keys'}")
    typer.echo(f"# written: {', '.join(written)}")


@run_command("deploy-local", "training", "data")
def deploy_local_command(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the app, keys, logs/ and results/."),
    nodes: int = typer.Option(3, "--nodes", help="SuperNodes to start on 127.0.0.1 (node i holds client i)."),
    timeout: float = typer.Option(3600.0, "--timeout", help="Seconds before everything is stopped."),
    insecure: bool = typer.Option(False, "--insecure", help="Rehearse without TLS and SuperNode authentication."),
    *,
    training: dict[str, Any],
    data: dict[str, Any],
) -> None:
    """Rehearse the deployment on this machine (TLS, registered SuperNodes, flwr run on 127.0.0.1), then stop all."""
    from w2vprof.fl.rehearsal import LOCALHOST, rehearse_locally

    if insecure:
        _warn_insecure(LOCALHOST)
    settings = _settings(clients=nodes, **data, **training)
    result = rehearse_locally(settings, out, nodes, timeout_s=timeout, insecure=insecure)
    typer.echo(f"started and stopped pids {', '.join(map(str, result.pids))}; logs in {result.logs_dir}")
    result.raise_if_failed()
    typer.echo(f"wrote {result.results_dir / 'rounds.csv'} and {result.results_dir / 'clients.csv'}")


@fl_app.command("report")
def report_command(
    runs: List[Path] = typer.Argument(..., help="Run folders (each with rounds.csv and clients.csv)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for validation-loss.png and client-cost-<run>.png."),
    profile: Optional[List[Path]] = typer.Option(
        None,
        "--profile",
        help="results.csv of `w2vprof profile` for the same configuration: prints predicted vs "
        "measured client seconds.",
    ),
) -> None:
    """Plot validation loss per round for every run and each run's per-client cost; compare with a profile."""
    from w2vprof.fl.plots import write_plots
    from w2vprof.fl.prediction import TOLERANCE, check_prediction, profile_rows, summary_line
    from w2vprof.fl.records import load_run

    loaded = [load_run(folder) for folder in runs]
    for run in loaded:
        typer.echo(summary_line(run))
        if run.fleet is not None and run.fleet.mixes:  # a fleet run: fl-estimate's days per fleet mix
            from w2vprof.report.fleet_views import fleet_mix_table
            from w2vprof.report.views import View, emit

            emit(View(tables=[fleet_mix_table(run.fleet)]), "table")
    for path in write_plots(runs, out):
        typer.echo(f"wrote {path}")
    if profile:
        rows = profile_rows(profile)
        for run in loaded:
            for check in check_prediction(run, rows):
                verdict = "within" if check.train_within_tolerance else "outside"
                typer.echo(
                    f"{check.run} on {check.device}: predicted epoch {check.predicted_epoch_sec:.3f} s "
                    f"(ceil({check.utterances_per_client}/{check.batch}) x {check.sec_per_batch:.4f} s/batch); "
                    f"measured train {check.measured_train_sec:.3f} s ({check.train_ratio:.2f}x, {verdict} "
                    f"{TOLERANCE:.0%}), whole client round {check.measured_client_sec:.3f} s "
                    f"({check.client_ratio:.2f}x)"
                )


def register(app: typer.Typer) -> None:
    app.add_typer(fl_app, name="fl")
