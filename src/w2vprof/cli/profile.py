"""`w2vprof profile`: one training configuration measured into results.csv, layers.csv and run.json."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import typer

from w2vprof.cli import recipe_options as ro
from w2vprof.cli import workload_options as wo
from w2vprof.cli.options import parse_positive_float, parse_positive_int, parse_whole_number
from w2vprof.paper import PAPER_SECONDS

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.measure.engine import ProfileConfig
    from w2vprof.records import LayerRecord, ResultRecord

__all__ = ["register", "print_record"]


#: What runs after the timed steps (issue 14; w2vprof.measure.diagnostics).
LAYER_REPEATS = typer.Option(
    "3", "--layer-repeats", help="Extra steps after the timed ones, timing each layer forward and backward."
)
TRACE = typer.Option(None, "--trace", help="Write one training step as a Chrome/Perfetto trace.")
CALIBRATE = typer.Option(
    False, "--calibrate", help="Measure this machine's peak FLOP/s and bandwidth if not cached (a few seconds)."
)


def profile(
    model: str = typer.Option("base", "--model", "-m", help=ro.MODEL_HELP),
    objective: str = ro.OBJECTIVE,
    vocab: str = ro.VOCAB,
    clusters: Optional[str] = ro.CLUSTERS,
    batch: str = typer.Option("4", "--batch", "-b", help="Utterances per batch."),
    seconds: str = typer.Option(f"{PAPER_SECONDS:g}", "--seconds", "-s", help="Utterance length in seconds."),
    precision: str = typer.Option("fp32", "--precision", "-p", help="fp32 or mixed."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    threads: Optional[str] = typer.Option(None, "--threads", help="torch intra-op threads (default: torch's)."),
    warmup: str = typer.Option("1", "--warmup", help="Untimed steps before timing (the measurement pass is one)."),
    repeats: str = typer.Option("5", "--repeats", help="Timed steps."),
    seed: int = typer.Option(0, "--seed", help="Seed for weights, batches, masks and negatives."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for results.csv, layers.csv and run.json."),
    audio: Optional[Path] = wo.AUDIO,
    clips_dir: Optional[Path] = wo.CLIPS_DIR,
    max_seconds: Optional[str] = wo.MAX_SECONDS,
    length_dist: Optional[str] = wo.LENGTH_DIST,
    checkpointing: str = ro.CHECKPOINTING,
    freeze: str = ro.FREEZE,
    accumulate: str = ro.ACCUMULATE,
    optimizer: str = ro.OPTIMIZER,
    compile: bool = ro.COMPILE,
    layer_repeats: str = LAYER_REPEATS,
    trace: Optional[Path] = TRACE,
    calibrate: bool = CALIBRATE,
) -> None:
    """Train real steps of a speech model for one configuration and record time, FLOPs and memory per layer."""
    from w2vprof.measure.engine import ProfileConfig

    config = ProfileConfig(
        model=ro.check_model(model),
        **ro.objective_settings(objective, vocab, clusters),
        batch=parse_positive_int(batch, "--batch"),
        seconds=parse_positive_float(seconds, "--seconds"),
        precision=precision,
        device=device,
        threads=parse_positive_int(threads, "--threads") if threads is not None else None,
        warmup=parse_whole_number(warmup, "--warmup"),
        repeats=parse_positive_int(repeats, "--repeats"),
        seed=seed,
        **wo.workload_kwargs(audio, clips_dir, max_seconds, length_dist),
        recipe=ro.recipe_text(checkpointing, freeze, accumulate, optimizer, compile),
        layer_repeats=parse_whole_number(layer_repeats, "--layer-repeats"),
        trace=str(check_trace_path(trace)) if trace is not None else None,
        calibrate="measure" if calibrate else "cached",
    )
    ro.check_recipe(config.recipe, config.model, config.batch, config.objective, config.vocab, config.clusters)
    check_out_folder(out)
    _measure_and_show(config, out)


def _measure_and_show(config: ProfileConfig, out: Path) -> None:
    """Measure the checked configuration, write its files into `out` and show its table (exit 1 on error)."""
    from w2vprof.measure.engine import profile_configuration
    from w2vprof.measure.output import write_profile

    result = profile_configuration(config)
    write_profile(out, config, result)
    for warning in result.warnings:
        typer.echo(f"w2vprof: warning: {warning}", err=True)
    print_record(result.record, result.layers)
    print_files(out, config.trace)
    if result.record.status in ("error", "timeout"):
        raise typer.Exit(1)


def check_out_folder(out: Path) -> None:
    """BadInput before anything is measured when --out cannot be the profile's folder."""
    from w2vprof.errors import BadInput

    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} exists and is not a folder")
    if not out.parent.is_dir():
        raise BadInput(f"--out {out}: folder {out.parent} does not exist")


def print_files(out: Path, trace: Optional[str]) -> None:
    typer.echo(f"Results: {out / 'results.csv'}, {out / 'layers.csv'}, {out / 'run.json'}")
    if trace and Path(trace).is_file():
        typer.echo(f"Trace: {trace} (open it at https://ui.perfetto.dev)")


def check_trace_path(path: Path) -> Path:
    """BadInput before anything is measured when the trace file could not be written there."""
    from w2vprof.errors import BadInput

    if path.is_dir():
        raise BadInput(f"--trace {path} is a folder; give a file name such as step.json")
    if not path.parent.is_dir():
        raise BadInput(f"--trace {path}: folder {path.parent} does not exist")
    return path


def print_record(record: ResultRecord, layers: Sequence[LayerRecord]) -> None:
    """The profile's table and the lines under it (w2vprof.report.run_views.profile_view)."""
    from w2vprof.report.run_views import profile_view
    from w2vprof.report.views import emit

    emit(profile_view(record, layers), "table")


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
