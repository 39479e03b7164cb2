"""What a sweep will do, decided before anything runs: the grid, the device, the results file and what to re-run.

The CLI turns flags into a `SweepRequest` and hands it to `plan_sweep`; everything the sweep decides (the default
results path, the device and the default grid it implies, whether an existing file is resumed, which rows are
re-run) lives here, so any caller gets the same sweep. Errors name settings (`preset`, `retry`, `resume`), not
command-line flags.

`plan_sweep` takes the results file's one-writer lock (w2vprof.sweep.writer.ResultsWriter.open) and the plan holds
it until closed: use the plan as a context manager around `run_sweep`.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from w2vprof.errors import BadInput, SettingError
from w2vprof.records import ResultRecord

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.measure.engine import ProfileConfig
    from w2vprof.sweep.grid import GridSpec
    from w2vprof.sweep.writer import ResultsWriter

__all__ = [
    "RETRYABLE",
    "SweepRequest",
    "SweepOptions",
    "SweepPlan",
    "plan_sweep",
    "default_results_path",
    "check_retry",
    "default_grid",
]

#: Statuses whose rows `retry` may re-run (`ok` rows are measurements: never replaced).
RETRYABLE = ("error", "timeout", "oom", "unsupported")


@dataclass(frozen=True)
class SweepRequest:
    """A sweep as asked for, in settings. None means "the default" (for the grid: the device's default grid)."""

    models: Optional[tuple[str, ...]] = None
    seconds: Optional[tuple[float, ...]] = None
    batches: Optional[tuple[int, ...]] = None
    precisions: Optional[tuple[str, ...]] = None
    recipes: Optional[tuple[str, ...]] = None  # training recipes' short forms (w2vprof.measure.recipes)
    objectives: Optional[tuple[str, ...]] = None  # pretrain, ctc (w2vprof.models.family.OBJECTIVES)
    vocab: int = 32  # ctc: output classes, the blank included
    clusters: Optional[int] = None  # HuBERT/WavLM pretraining: cluster classes; None: each model's default
    preset: Optional[str] = None
    device: str = "auto"
    warmup: Optional[int] = None
    repeats: Optional[int] = None
    threads: Optional[int] = None
    seed: int = 0
    workload: dict[str, Any] = field(default_factory=dict)  # audio, clips_dir, max_seconds, length_dist
    out: Optional[Path] = None  # None: results/HOST-DATE.csv
    resume: bool = False
    retry: tuple[str, ...] = ()  # statuses whose rows are re-run (needs resume)
    mem_limit_bytes: Optional[int] = None
    timeout_s: Optional[float] = None
    prune: bool = True
    layer_repeats: int = 0  # extra steps per configuration timing each layer (0: none, so the wall-time target holds)


@dataclass
class SweepOptions:
    """How each configuration is run and recorded (the runner's part of the plan)."""

    out: Path
    mem_limit_bytes: Optional[int] = None
    timeout_s: Optional[float] = None
    prune: bool = True
    device_identity: dict[str, Any] = field(
        default_factory=dict
    )  # identify(device): fingerprint & co. for skipped rows
    retry: tuple[str, ...] = ()


@dataclass
class SweepPlan:
    """Every configuration of the grid, the results file (locked while the plan is open) and its rows so far."""

    configs: list[ProfileConfig]
    options: SweepOptions
    writer: ResultsWriter
    existing: list[ResultRecord]
    device: str

    @property
    def out(self) -> Path:
        return self.options.out

    def close(self) -> None:
        """Release the results file's lock (its rows are already on disk)."""
        self.writer.close()

    def __enter__(self) -> SweepPlan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def default_results_path(
    folder: Path = Path("results"), host: Optional[str] = None, now: Optional[datetime] = None
) -> Path:
    """results/HOST-YYYYmmdd-HHMMSS.csv (the folder is created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = f"{(now or datetime.now()):%Y%m%d-%H%M%S}"
    return folder / f"{host or socket.gethostname()}-{stamp}.csv"


def check_retry(retry: tuple[str, ...], resume: bool) -> tuple[str, ...]:
    """The statuses to re-run, checked: each retryable, and only when resuming a file."""
    for status in retry:
        if status not in RETRYABLE:
            raise SettingError("retry", f"status {status!r} is unknown; choose from {', '.join(RETRYABLE)}")
    if retry and not resume:
        raise SettingError("retry", "re-runs rows of an existing results file: it needs {resume}", ("resume",))
    return tuple(dict.fromkeys(retry))


def _check_out(out: Path) -> Path:
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise BadInput(f"results file {out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise BadInput(f"results file {out}: folder {folder} is not writable")
    if out.is_dir():
        raise BadInput(f"results file {out} is a folder; give a file name")
    return out


def default_grid(device: str, preset: Optional[str]) -> GridSpec:
    """The preset asked for, else the device's default grid (mixed precision on a CPU only with native bf16)."""
    from w2vprof.devices.cpu import read_native_bf16
    from w2vprof.sweep.grid import default_spec, preset_spec

    if preset:
        return preset_spec(preset)
    return default_spec(device, read_native_bf16() if device == "cpu" else None)


def _resolve_device(requested: str) -> str:
    from w2vprof.devices.resolve import resolve_device

    return resolve_device(requested)


def _common_settings(request: SweepRequest) -> dict[str, Any]:
    """The ProfileConfig fields every configuration of the sweep shares."""
    return {
        "vocab": request.vocab,
        "clusters": request.clusters,
        "threads": request.threads,
        "seed": request.seed,
        "layer_repeats": request.layer_repeats,
        **request.workload,
    }


def plan_sweep(request: SweepRequest, warm_start: bool = True) -> SweepPlan:
    """Check the request, take the results file's lock and read its rows, resolve the device, expand the grid.

    `warm_start` starts the process that configuration children come from right away, so its imports overlap
    this planning (w2vprof.sweep.launch); tests that fake the children turn it off.

    BadInput for anything wrong before a single configuration runs: an unknown preset or retry status, a results
    file in an unwritable folder, one another w2vprof process is writing, one with rows when not resuming (or
    one that is not a results file), a device this machine lacks, a torch/torchaudio pair that cannot build
    the model. The returned plan holds the lock: close it (or use it in a `with`) when the sweep ends.
    """
    from w2vprof.compat import check_model_support
    from w2vprof.devices.resolve import check_device_name
    from w2vprof.sweep.grid import expand, preset_spec, with_overrides
    from w2vprof.sweep.writer import ResultsWriter

    retry = check_retry(tuple(request.retry), request.resume)
    if request.preset:
        preset_spec(request.preset)  # an unknown preset is reported before the device is probed
    check_device_name(request.device)
    if warm_start:
        from w2vprof.sweep.launch import warm_start as start_fork_server

        start_fork_server()
    check_model_support()  # before the file is created and any child starts: one line, not an error row each
    out = _check_out(Path(request.out) if request.out is not None else default_results_path())
    writer, existing = ResultsWriter.open(out, resume=request.resume)
    try:
        from w2vprof.devices import identify

        device = _resolve_device(request.device)
        spec = with_overrides(
            default_grid(device, request.preset),
            models=request.models,
            seconds=request.seconds,
            batches=request.batches,
            precisions=request.precisions,
            warmup=request.warmup,
            repeats=request.repeats,
            recipes=request.recipes,
            objectives=request.objectives,
        )
        common = _common_settings(request)
        options = SweepOptions(
            out=out,
            mem_limit_bytes=request.mem_limit_bytes,
            timeout_s=request.timeout_s,
            prune=request.prune,
            device_identity=identify(device),
            retry=retry,
        )
        return SweepPlan(expand(spec, device, common), options, writer, existing, device)
    except BaseException:
        writer.close()
        raise
