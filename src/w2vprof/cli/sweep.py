"""`w2vprof sweep`: the whole grid on this device, safe to leave running for hours."""

from __future__ import annotations

import shlex
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from w2vprof.records import PRECISIONS

if TYPE_CHECKING:  # the type only: rich.progress is imported when a sweep shows progress
    from rich.progress import Progress, TaskID

from w2vprof.cli import recipe_options as ro
from w2vprof.cli import workload_options as wo

__all__ = ["register"]


#: Seconds per layer and the calibrated ceilings (issue 14): layer timing off by default, so the wall time holds.
LAYER_REPEATS = typer.Option(
    "0", "--layer-repeats", help="Extra steps per configuration timing each layer (default 0)."
)
CALIBRATE = typer.Option(
    True, "--calibrate/--no-calibrate", help="Record this machine's measured peaks (measured once, then cached)."
)


#: The sweep's options whose help text needs a line of its own.
PRESET = typer.Option(
    None,
    "--preset",
    help="paper (Table 2), lengths (Fig. 3), quick, recipes (training recipes, docs/recipes.md), models (each "
    "family's base model, pretraining and CTC).",
)
RETRY = typer.Option(
    None, "--retry", help="With --resume: re-run rows with these statuses, e.g. error,timeout (oom only if named)."
)
MEM_LIMIT = typer.Option(None, "--mem-limit", help="Stop a configuration above this memory, e.g. 8GiB.")


def sweep(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Comma list. " + ro.MODEL_HELP),
    objective: Optional[str] = ro.OBJECTIVE_LIST,
    vocab: str = ro.VOCAB,
    clusters: Optional[str] = ro.CLUSTERS,
    seconds: Optional[str] = typer.Option(None, "--seconds", "-s", help="Comma list of utterance lengths (s)."),
    batch: Optional[str] = typer.Option(None, "--batch", "-b", help="Comma list of batch sizes."),
    precision: Optional[str] = typer.Option(None, "--precision", "-p", help="Comma list: fp32, mixed."),
    preset: Optional[str] = PRESET,
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    warmup: Optional[str] = typer.Option(None, "--warmup", help="Untimed steps per configuration (default 1)."),
    repeats: Optional[str] = typer.Option(None, "--repeats", help="Timed steps per configuration (default 5)."),
    threads: Optional[str] = typer.Option(None, "--threads", help="torch intra-op threads."),
    seed: int = typer.Option(0, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Results CSV (default results/HOST-DATE.csv)."),
    resume: bool = typer.Option(False, "--resume", help="Skip configurations already in --out; run the rest."),
    retry: Optional[str] = RETRY,
    mem_limit: Optional[str] = MEM_LIMIT,
    timeout: Optional[str] = typer.Option(None, "--timeout", help="Seconds allowed per configuration."),
    no_prune: bool = typer.Option(False, "--no-prune", help="Measure configurations that an OOM implies are OOM."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the final summary."),
    layer_repeats: str = LAYER_REPEATS,
    calibrate: bool = CALIBRATE,
    audio: Optional[Path] = wo.AUDIO,
    clips_dir: Optional[Path] = wo.CLIPS_DIR,
    max_seconds: Optional[str] = wo.MAX_SECONDS,
    length_dist: Optional[str] = wo.LENGTH_DIST,
    checkpointing: Optional[str] = ro.CHECKPOINTING_LIST,
    freeze: Optional[str] = ro.FREEZE_LIST,
    accumulate: Optional[str] = ro.ACCUMULATE_LIST,
    optimizer: Optional[str] = ro.OPTIMIZER_LIST,
    compile: bool = ro.COMPILE,
) -> None:
    """Train real steps over a grid of models, objectives, lengths, batches and precisions; one CSV row each."""
    from w2vprof.sweep.plan import SweepRequest, plan_sweep

    request = SweepRequest(
        **_grid_settings(model, seconds, batch, precision),
        **_objective_settings(objective, vocab, clusters),
        recipes=ro.recipe_texts(checkpointing, freeze, accumulate, optimizer, compile),
        preset=preset,
        device=device,
        **_step_settings(warmup, repeats, threads, layer_repeats),
        seed=seed,
        workload=wo.workload_kwargs(audio, clips_dir, max_seconds, length_dist),
        out=out,
        resume=resume,
        **_limit_settings(retry, mem_limit, timeout),
        prune=not no_prune,
    )
    plan = plan_sweep(request)  # a SettingError names a setting; cli.main shows it as this command's flag
    with plan:
        _calibrate(plan, request.threads, quiet, calibrate)
        _run(plan, quiet)


def _grid_settings(
    model: Optional[str], seconds: Optional[str], batch: Optional[str], precision: Optional[str]
) -> dict[str, Any]:
    """--model, --seconds, --batch and --precision as SweepRequest fields (None: the preset's or default grid's)."""
    from w2vprof.cli.options import parse_float_list, parse_int_list, parse_name_list

    return {
        "models": tuple(ro.check_model(name) for name in parse_name_list(model, "--model")) if model else None,
        "seconds": tuple(parse_float_list(seconds, "--seconds")) if seconds else None,
        "batches": tuple(parse_int_list(batch, "--batch")) if batch else None,
        "precisions": tuple(parse_name_list(precision, "precision", PRECISIONS)) if precision else None,
    }


def _objective_settings(objective: Optional[str], vocab: str, clusters: Optional[str]) -> dict[str, Any]:
    """--objective (a comma list; None: the preset's or pretraining), --vocab and --clusters as SweepRequest
    fields."""
    from w2vprof.cli.options import parse_name_list
    from w2vprof.models import OBJECTIVES

    objectives = parse_name_list(objective, "objective", OBJECTIVES) if objective is not None else ["pretrain"]
    settings = [ro.objective_settings(name, vocab, clusters) for name in objectives]
    return {
        "objectives": tuple(dict.fromkeys(s["objective"] for s in settings)) if objective is not None else None,
        "vocab": settings[0]["vocab"],
        "clusters": settings[0]["clusters"],
    }


def _step_settings(
    warmup: Optional[str], repeats: Optional[str], threads: Optional[str], layer_repeats: str
) -> dict[str, Any]:
    """How each configuration steps, as SweepRequest fields (None: the grid's default)."""
    from w2vprof.cli.options import parse_positive_int, parse_whole_number

    return {
        "warmup": parse_whole_number(warmup, "--warmup") if warmup is not None else None,
        "repeats": parse_positive_int(repeats, "--repeats") if repeats is not None else None,
        "threads": parse_positive_int(threads, "--threads") if threads is not None else None,
        "layer_repeats": parse_whole_number(layer_repeats, "--layer-repeats"),
    }


def _limit_settings(retry: Optional[str], mem_limit: Optional[str], timeout: Optional[str]) -> dict[str, Any]:
    """--retry, --mem-limit and --timeout as SweepRequest fields."""
    from w2vprof.cli.options import parse_bytes, parse_name_list, parse_positive_float
    from w2vprof.sweep.plan import RETRYABLE

    return {
        "retry": tuple(parse_name_list(retry, "--retry status", RETRYABLE)) if retry is not None else (),
        "mem_limit_bytes": parse_bytes(mem_limit, "--mem-limit") if mem_limit is not None else None,
        "timeout_s": parse_positive_float(timeout, "--timeout") if timeout is not None else None,
    }


def _calibrate(plan, threads: Optional[int], quiet: bool, asked: bool = True) -> None:
    """This machine's ceilings in the cache before the first configuration (w2vprof.sweep.calibration)."""
    from w2vprof.sweep.calibration import ensure_calibration

    if not asked:
        return
    announce = None if quiet else lambda step: typer.echo(step, err=True)  # the first sweep's one named step
    calibration, what = ensure_calibration(plan.device, threads, plan.options.device_identity, announce=announce)
    if calibration is None:
        typer.echo(f"w2vprof: warning: {what}; the rows' measured-peak columns stay empty", err=True)
    elif not quiet:
        fp32 = calibration.peak_flops_fp32_measured / 1e9
        typer.echo(
            f"calibration ({what}): fp32 matmul {fp32:.1f} GFLOP/s, copy {calibration.mem_bw_measured / 1e9:.1f} GB/s",
            err=True,
        )


def _run(plan, quiet: bool) -> None:
    """Run the plan with progress on stderr; Ctrl-C or SIGTERM: finished rows kept, the resume command printed."""
    from w2vprof.errors import W2vprofError
    from w2vprof.sweep.runner import run_sweep

    reporter = _Reporter(quiet)
    # SIGTERM (a scheduler, `kill`, systemd stopping the job) stops as cleanly as Ctrl-C: child stopped,
    # finished rows kept, resume command printed.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with reporter:
            written = run_sweep(plan, reporter)
    except KeyboardInterrupt:
        reporter.close()
        done = len(plan.existing) + reporter.finished_count
        typer.echo(
            f"\nInterrupted: {done} of {len(plan.configs)} configurations are saved in {plan.out}.\n"
            f"Resume with: {_resume_command(plan.out)}",
            err=True,
        )
        raise typer.Exit(130) from None
    except W2vprofError:
        reporter.close()  # a full disk, say: its one line goes out after the progress bar
        raise
    _print_summary(written, plan.out, len(plan.configs))


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _resume_command(out: Path) -> str:
    args = [a for a in sys.argv[1:] if a != "--resume"]
    if "--out" not in args and "-o" not in args:
        args += ["--out", str(out)]
    return "w2vprof " + " ".join(shlex.quote(a) for a in args) + " --resume"


def _format_eta(eta_s: Optional[float]) -> str:
    if eta_s is None:
        return "ETA learning"
    minutes, secs = divmod(int(eta_s), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}h{minutes:02d}m" if hours else f"ETA {minutes}m{secs:02d}s"


class _Reporter:
    """Progress for a sweep: a Rich bar on a terminal, plain log lines otherwise, nothing with --quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.interactive = sys.stderr.isatty() and not quiet
        self.finished_count = 0
        self._progress: Optional[Progress] = None
        self._task: Optional[TaskID] = None
        self._start = time.monotonic()

    def __enter__(self):
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[eta]}"),
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
            self._progress = None

    def _log(self, text: str) -> None:
        if not self.quiet:
            elapsed = int(time.monotonic() - self._start)
            print(f"[{elapsed // 60:3d}m{elapsed % 60:02d}s] {text}", file=sys.stderr, flush=True)

    def started(self, total: int, to_run: int) -> None:
        skipped = total - to_run
        if self._progress is not None:
            self._task = self._progress.add_task("starting", total=to_run, eta="")
        self._log(f"sweep: {to_run} configurations to run" + (f" ({skipped} already in the file)" if skipped else ""))

    def running(self, index: int, config, eta_s: Optional[float]) -> None:
        from w2vprof.sweep.runner import config_label

        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=config_label(config), eta=_format_eta(eta_s))
        else:
            self._log(f"running {index + 1}: {config_label(config)} ({_format_eta(eta_s)})")

    def finished(self, index: int, record, wall_s: float) -> None:
        self.finished_count += 1
        measured = (
            f"{record.sec_per_batch_median:.3f} s/batch" if record.sec_per_batch_median is not None else record.status
        )
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)
            self._progress.console.print(
                f"  {record.model} {record.objective} batch {record.batch} {record.seconds:g} s {record.precision}: "
                + measured
                + (f" [{record.status}: {record.skipped_because or record.error}]" if record.status != "ok" else "")
            )
        else:
            detail = f" ({record.skipped_because or record.error})" if record.status != "ok" else ""
            self._log(f"done {index + 1}: {record.status} {measured}{detail} in {wall_s:.1f} s")


def _print_summary(written, out: Path, total: int) -> None:
    from collections import Counter

    counts = Counter(r.status for r in written)
    already = total - len(written)
    typer.echo(
        f"Results: {out} (ran {len(written)} of {total} configurations"
        + (": " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) if written else "")
        + (f"; {already} were already in the file" if already else "")
        + ")"
    )


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)
