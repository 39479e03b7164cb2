"""`w2vprof sweep`: the whole grid on this device, safe to leave running for hours."""
from __future__ import annotations

import os
import shlex
import signal
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

from w2vprof.cli import workload_options as wo

__all__ = ["register"]


def sweep(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Comma list: tiny, base, large."),
    seconds: Optional[str] = typer.Option(None, "--seconds", "-s", help="Comma list of utterance lengths (s)."),
    batch: Optional[str] = typer.Option(None, "--batch", "-b", help="Comma list of batch sizes."),
    precision: Optional[str] = typer.Option(None, "--precision", "-p", help="Comma list: fp32, mixed."),
    preset: Optional[str] = typer.Option(None, "--preset", help="paper (Table 2), lengths (Fig. 3), quick."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    warmup: Optional[str] = typer.Option(None, "--warmup", help="Untimed steps per configuration (default 1)."),
    repeats: Optional[str] = typer.Option(None, "--repeats", help="Timed steps per configuration (default 5)."),
    threads: Optional[str] = typer.Option(None, "--threads", help="torch intra-op threads."),
    seed: int = typer.Option(0, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Results CSV (default results/HOST-DATE.csv)."),
    resume: bool = typer.Option(False, "--resume", help="Skip configurations already in --out; run the rest."),
    mem_limit: Optional[str] = typer.Option(None, "--mem-limit", help="Stop a configuration above this memory, e.g. 8GiB."),
    timeout: Optional[str] = typer.Option(None, "--timeout", help="Seconds allowed per configuration."),
    no_prune: bool = typer.Option(False, "--no-prune", help="Measure configurations that an OOM implies are OOM."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the final summary."),
    audio: Optional[Path] = wo.AUDIO,
    clips_dir: Optional[Path] = wo.CLIPS_DIR,
    max_seconds: Optional[str] = wo.MAX_SECONDS,
    length_dist: Optional[str] = wo.LENGTH_DIST,
) -> None:
    """Train real wav2vec 2.0 steps over a grid of models, lengths, batches and precisions; one CSV row each."""
    from w2vprof.cli.options import (
        check_output_file,
        parse_bytes,
        parse_float_list,
        parse_int_list,
        parse_name_list,
        parse_positive_float,
        parse_positive_int,
    )
    from w2vprof.errors import BadInput
    from w2vprof.models import MODEL_NAMES

    # -- everything the user typed is checked before anything runs ----------------------------------
    models = tuple(parse_name_list(model, "model", MODEL_NAMES)) if model else None
    seconds_list = tuple(parse_float_list(seconds, "--seconds")) if seconds else None
    batches = tuple(parse_int_list(batch, "--batch")) if batch else None
    precisions = tuple(parse_name_list(precision, "precision", ("fp32", "mixed"))) if precision else None
    warmup_value = None
    if warmup is not None:
        if not str(warmup).isdigit():
            raise BadInput(f"--warmup must be a whole number >= 0, got {warmup!r}")
        warmup_value = int(warmup)
    repeats_value = parse_positive_int(repeats, "--repeats") if repeats is not None else None
    threads_value = parse_positive_int(threads, "--threads") if threads is not None else None
    mem_limit_bytes = parse_bytes(mem_limit, "--mem-limit") if mem_limit is not None else None
    timeout_s = parse_positive_float(timeout, "--timeout") if timeout is not None else None
    workload = wo.workload_kwargs(audio, clips_dir, max_seconds, length_dist)
    if device not in ("auto", "cpu", "cuda", "mps"):
        raise BadInput(f"unknown --device {device!r}; choose from auto, cpu, cuda, mps")

    from w2vprof.sweep.grid import default_spec, expand, preset_spec, with_overrides

    spec = preset_spec(preset) if preset else None
    if out is None:
        default_dir = Path("results")
        default_dir.mkdir(exist_ok=True)
        out = default_dir / f"{socket.gethostname()}-{datetime.now():%Y%m%d-%H%M%S}.csv"
    out = check_output_file(out)
    existing = []
    if out.exists() and out.stat().st_size > 0:
        if not resume:
            raise BadInput(f"--out {out} already exists: add --resume to continue it, or choose a new file")
        from w2vprof.sweep.writer import load_existing

        existing = load_existing(out)
    if not os.access(out.parent, os.W_OK):
        raise BadInput(f"--out {out}: folder {out.parent} is not writable")

    # -- the device decides the default grid ---------------------------------------------------------
    from w2vprof.compat import check_model_support
    from w2vprof.devices import identify
    from w2vprof.devices.cpu import read_native_bf16
    from w2vprof.measure.engine import resolve_device

    check_model_support()  # before any child starts: a broken torch/torchaudio pair is one line, not an error row each
    resolved = resolve_device(device)
    if spec is None:
        spec = default_spec(resolved, read_native_bf16() if resolved == "cpu" else None)
    spec = with_overrides(
        spec, models=models, seconds=seconds_list, batches=batches, precisions=precisions,
        warmup=warmup_value, repeats=repeats_value,
    )
    common = {"threads": threads_value, "seed": seed, **workload}
    configs = expand(spec, resolved, common)
    identity = identify(resolved)

    from w2vprof.sweep.runner import SweepOptions, run_sweep

    options = SweepOptions(
        out=out, mem_limit_bytes=mem_limit_bytes, timeout_s=timeout_s, prune=not no_prune, device_identity=identity,
    )
    reporter = _make_reporter(quiet)
    resume_command = _resume_command(out)
    # SIGTERM (a scheduler, `kill`, systemd stopping the job) stops as cleanly as Ctrl-C: child stopped,
    # finished rows kept, resume command printed.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with reporter:
            written = run_sweep(configs, options, existing, reporter)
    except KeyboardInterrupt:
        reporter.close()
        done = len(existing) + reporter.finished_count
        typer.echo(
            f"\nInterrupted: {done} of {len(configs)} configurations are saved in {out}.\n"
            f"Resume with: {resume_command}",
            err=True,
        )
        raise typer.Exit(130)
    _print_summary(written, out, len(configs))


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
        self._progress = None
        self._task = None
        self._start = time.monotonic()

    def __enter__(self):
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[eta]}"), transient=False,
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

        if self._progress is not None:
            self._progress.update(self._task, description=config_label(config), eta=_format_eta(eta_s))
        else:
            self._log(f"running {index + 1}: {config_label(config)} ({_format_eta(eta_s)})")

    def finished(self, index: int, record, wall_s: float) -> None:
        self.finished_count += 1
        measured = f"{record.sec_per_batch_median:.3f} s/batch" if record.sec_per_batch_median is not None else record.status
        if self._progress is not None:
            self._progress.advance(self._task)
            self._progress.console.print(
                f"  {record.model} batch {record.batch} {record.seconds:g} s {record.precision}: {measured}"
                + (f" [{record.status}: {record.skipped_because or record.error}]" if record.status != "ok" else "")
            )
        else:
            detail = f" ({record.skipped_because or record.error})" if record.status != "ok" else ""
            self._log(f"done {index + 1}: {record.status} {measured}{detail} in {wall_s:.1f} s")


def _make_reporter(quiet: bool) -> _Reporter:
    return _Reporter(quiet)


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
