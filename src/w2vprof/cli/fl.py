"""`w2vprof fl`: federated wav2vec 2.0 pretraining on Flower, simulated here or deployed on devices.

    w2vprof fl simulate       Flower's simulation engine on this machine (one virtual SuperNode per client)
    w2vprof fl deploy-config  the Flower app and the commands for a SuperLink and one SuperNode per device
    w2vprof fl deploy-local   that deployment on 127.0.0.1 (SuperLink + SuperNodes + flwr run), then stopped
    w2vprof fl report         plots (validation loss per round, per-client cost) and a profile's prediction

flwr and torch are imported inside the commands: `w2vprof --help` stays instant and works without the extra.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]

fl_app = typer.Typer(
    help="Federated pretraining on Flower (needs pip install 'w2vprof\\[fl]'): simulate, deploy, report.",
    no_args_is_help=True,
)

# Options shared by every command that starts a run.
MODEL = typer.Option("tiny", "--model", "-m", help="tiny, base or large.")
ROUNDS = typer.Option(20, "--rounds", help="Federated rounds.")
CLIENTS_PER_ROUND = typer.Option(0, "--clients-per-round", help="Clients sampled each round (0: all).")
AGGREGATION = typer.Option("fedavg", "--aggregation", help="fedavg (weight = examples) or loss (from the training loss).")
LOSS_WEIGHTING = typer.Option("exp", "--loss-weighting", help="With --aggregation loss: exp (exp(-loss/T)) or inverse (1/loss).")
TEMPERATURE = typer.Option(1.0, "--temperature", help="T of exp(-loss/T).")
LOCAL_EPOCHS = typer.Option(1, "--local-epochs", help="Passes over its partition each client makes per round.")
BATCH = typer.Option(4, "--batch", "-b", help="Utterances per local batch.")
LR = typer.Option(0.0, "--lr", help="AdamW learning rate (0: the model's pretraining value, 5e-4).")
MAX_SECONDS = typer.Option(15.0, "--max-seconds", help="Crop longer utterances to a random window this long.")
VALIDATION_UTTERANCES = typer.Option(16, "--validation-utterances", help="Held-out utterances scored each round.")
DEVICE = typer.Option("cpu", "--device", help="cpu, cuda or mps: where clients train and the server validates.")
PRECISION = typer.Option("fp32", "--precision", "-p", help="fp32 or mixed.")
THREADS = typer.Option(0, "--threads", help="torch threads per client (0: cores / --parallel in simulation).")
SEED = typer.Option(0, "--seed", help="Seed of weights, sampling, data order, masks.")
ROUND_TIMEOUT = typer.Option(3600.0, "--round-timeout", help="Seconds to wait for a round's replies.")


#: the parameters above, by name: every run command hands them on unchanged
TRAINING_OPTIONS = (
    "model", "rounds", "clients_per_round", "aggregation", "loss_weighting", "temperature", "local_epochs", "batch",
    "lr", "max_seconds", "validation_utterances", "device", "precision", "threads", "seed", "round_timeout",
)


def _training(values: dict) -> dict:
    return {name: values[name] for name in TRAINING_OPTIONS}


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
    typer.echo("  ".join(parts))


def _check_new_out(out: Path) -> None:
    from w2vprof.errors import BadInput
    from w2vprof.fl.records import RESULT_FILES

    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} exists and is not a folder")
    existing = [name for name in RESULT_FILES if (out / name).exists()]
    if existing:
        raise BadInput(f"--out {out} already holds {', '.join(existing)}; choose a new folder")


@fl_app.command("simulate")
def simulate_command(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for rounds.csv, clients.csv, run.json (and a generated corpus)."),
    partitions: str = typer.Option("synthetic", "--partitions", help="A `w2vprof partition` folder, or synthetic (generate a speech corpus, one speaker per client)."),
    clients: int = typer.Option(10, "--clients", help="Clients (virtual SuperNodes); a partitions folder needs at least this many."),
    clips_dir: str = typer.Option("", "--clips-dir", help="Where the manifests' clips are (default: clips/ beside or above them)."),
    validation: str = typer.Option("", "--validation", help="Held-out manifest or audio folder (default: heldout.tsv in --partitions)."),
    utterances_per_client: int = typer.Option(8, "--utterances-per-client", help="Synthetic partitions: utterances per client."),
    corpus_engine: str = typer.Option("auto", "--corpus-engine", help="Synthetic partitions: auto, espeak or synthetic."),
    parallel: int = typer.Option(1, "--parallel", help="Clients training at once (1: each alone with every core, honest seconds)."),
    verbose: bool = typer.Option(False, "--verbose", help="Show Flower's and Ray's own logs."),
    model: str = MODEL, rounds: int = ROUNDS, clients_per_round: int = CLIENTS_PER_ROUND,
    aggregation: str = AGGREGATION, loss_weighting: str = LOSS_WEIGHTING, temperature: float = TEMPERATURE,
    local_epochs: int = LOCAL_EPOCHS, batch: int = BATCH, lr: float = LR, max_seconds: float = MAX_SECONDS,
    validation_utterances: int = VALIDATION_UTTERANCES, device: str = DEVICE, precision: str = PRECISION,
    threads: int = THREADS, seed: int = SEED, round_timeout: float = ROUND_TIMEOUT,
) -> None:
    """Train federated on this machine with Flower's simulation engine; every client measured every round."""
    from w2vprof.errors import BadInput

    training = _training(locals())
    _check_new_out(out)
    if parallel < 1:
        raise BadInput(f"--parallel must be at least 1, got {parallel}")
    settings = _settings(
        clients=clients, partitions=partitions, clips_dir=clips_dir, validation=validation,
        utterances_per_client=utterances_per_client, out_dir=str(out.resolve()), **training,
    )
    from w2vprof.compat import check_model_support
    from w2vprof.fl.simulate import SimulationOptions, simulate

    check_model_support()  # before Ray starts clients: a broken torch/torchaudio pair is one line, exit 2
    folder = simulate(
        settings, SimulationOptions(parallel=parallel, verbose=verbose), on_round=_print_round,
        corpus_engine=corpus_engine,
    )
    typer.echo(f"wrote {folder / 'rounds.csv'} and {folder / 'clients.csv'}")


def _deploy_settings(nodes, validation: str, **values):
    from w2vprof.fl.deploy import deployment_settings

    return deployment_settings(_settings(clients=max(1, len(nodes)), **values), nodes, validation)


@fl_app.command("deploy-config")
def deploy_config_command(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the Flower app, FLWR_HOME, commands.sh and results/ (on the SuperLink machine)."),
    superlink: str = typer.Option(..., "--superlink", help="HOST:PORT devices reach the SuperLink at (e.g. 192.168.1.10:9093)."),
    node: list[str] = typer.Option(..., "--node", help="NAME=PARTITION_PATH[,CLIPS_DIR] of one device (paths on that device); repeat per device."),
    validation: str = typer.Option(..., "--validation", help="Held-out manifest or audio folder on the SuperLink machine."),
    model: str = MODEL, rounds: int = ROUNDS, clients_per_round: int = CLIENTS_PER_ROUND,
    aggregation: str = AGGREGATION, loss_weighting: str = LOSS_WEIGHTING, temperature: float = TEMPERATURE,
    local_epochs: int = LOCAL_EPOCHS, batch: int = BATCH, lr: float = LR, max_seconds: float = MAX_SECONDS,
    validation_utterances: int = VALIDATION_UTTERANCES, device: str = DEVICE, precision: str = PRECISION,
    threads: int = THREADS, seed: int = SEED, round_timeout: float = ROUND_TIMEOUT,
) -> None:
    """Write the Flower app and print the commands: a SuperLink, one SuperNode per device, then flwr run."""
    from w2vprof.fl.deploy import parse_node, write_deployment

    training = _training(locals())
    nodes = [parse_node(text) for text in node]
    settings = _deploy_settings(nodes, validation, **training)
    plan = write_deployment(settings, out, superlink, nodes)
    typer.echo((plan.out_dir / "commands.sh").read_text(), nl=False)
    typer.echo(f"# written: {plan.app_dir}/pyproject.toml, {plan.flwr_home}/config.toml, {plan.out_dir}/commands.sh")


@fl_app.command("deploy-local")
def deploy_local_command(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the app, logs/ and results/."),
    partitions: str = typer.Option("synthetic", "--partitions", help="A `w2vprof partition` folder (node i gets client i), or synthetic."),
    nodes: int = typer.Option(3, "--nodes", help="SuperNodes to start on 127.0.0.1."),
    clips_dir: str = typer.Option("", "--clips-dir", help="Where the manifests' clips are."),
    validation: str = typer.Option("", "--validation", help="Held-out manifest or audio folder (default: heldout.tsv in --partitions)."),
    utterances_per_client: int = typer.Option(8, "--utterances-per-client", help="Synthetic partitions: utterances per client."),
    timeout: float = typer.Option(3600.0, "--timeout", help="Seconds before everything is stopped."),
    model: str = MODEL, rounds: int = ROUNDS, clients_per_round: int = CLIENTS_PER_ROUND,
    aggregation: str = AGGREGATION, loss_weighting: str = LOSS_WEIGHTING, temperature: float = TEMPERATURE,
    local_epochs: int = LOCAL_EPOCHS, batch: int = BATCH, lr: float = LR, max_seconds: float = MAX_SECONDS,
    validation_utterances: int = VALIDATION_UTTERANCES, device: str = DEVICE, precision: str = PRECISION,
    threads: int = THREADS, seed: int = SEED, round_timeout: float = ROUND_TIMEOUT,
) -> None:
    """Rehearse the deployment on this machine: SuperLink, SuperNodes and flwr run on 127.0.0.1, then stop all."""
    from w2vprof.errors import BadInput
    from w2vprof.fl import require_flwr
    from w2vprof.fl.data import client_entries, prepare_synthetic, validation_source
    from w2vprof.fl.deploy import NodeSpec, free_port, run_local, write_deployment

    training = _training(locals())
    require_flwr()
    out = out.resolve()
    _check_new_out(out / "results")
    base = _settings(
        clients=nodes, partitions=partitions, clips_dir=clips_dir, validation=validation,
        utterances_per_client=utterances_per_client, out_dir=str(out), **training,
    )
    if base.synthetic:
        base = prepare_synthetic(base)
    entries = client_entries(Path(base.partitions))
    if len(entries) < nodes:
        raise BadInput(f"--partitions {base.partitions} holds {len(entries)} partitions; --nodes is {nodes}")
    specs = [
        NodeSpec(name=f"node-{i}", partition_path=str(entries[i].resolve()), clips_dir=base.clips_dir, port=free_port())
        for i in range(nodes)
    ]
    settings = _deploy_settings(specs, str(validation_source(base)), **training).replace(clips_dir=base.clips_dir)
    plan = write_deployment(settings, out, f"127.0.0.1:{free_port()}", specs)
    result = run_local(plan, timeout_s=timeout)
    typer.echo(f"started and stopped pids {', '.join(map(str, result.pids))}; logs in {result.logs_dir}")
    if result.returncode != 0:
        raise BadInput(f"flwr run exited with status {result.returncode}; see {result.logs_dir / 'flwr-run.log'}", exit_code=1)
    typer.echo(f"wrote {result.results_dir / 'rounds.csv'} and {result.results_dir / 'clients.csv'}")


@fl_app.command("report")
def report_command(
    runs: list[Path] = typer.Argument(..., help="Run folders (each with rounds.csv and clients.csv)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for validation-loss.png and client-cost-<run>.png."),
    profile: Optional[list[Path]] = typer.Option(None, "--profile", help="results.csv of `w2vprof profile` for the same configuration: prints predicted vs measured client seconds."),
) -> None:
    """Plot validation loss per round for every run and each run's per-client cost; compare with a profile."""
    from w2vprof.fl.plots import load_run, write_plots
    from w2vprof.fl.prediction import TOLERANCE, check_prediction, profile_rows, summary_line

    loaded = [load_run(folder) for folder in runs]
    for run in loaded:
        typer.echo(summary_line(run))
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
                    f"{TOLERANCE:.0%}), whole client round {check.measured_client_sec:.3f} s ({check.client_ratio:.2f}x)"
                )


def register(app: typer.Typer) -> None:
    app.add_typer(fl_app, name="fl")
