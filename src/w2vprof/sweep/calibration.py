"""A sweep's calibration: this machine's measured ceilings, once per sweep, cached per device fingerprint.

Every configuration child reads the calibration from the cache (w2vprof.measure.diagnostics, `cached`) and
records its fields in its row. So before the first configuration the sweep makes sure the cache holds one for
the thread count the children will use: the cached one when there is one (no cost), else one measured now in a
process of its own. A process of its own because nothing else may run while the ceilings are measured (the
sweep's own process only waits), because the sweep's process must not hold device memory while configurations
run (on CUDA the measurement makes a context and buffers), and because a child measuring it instead would run it
under the configuration's memory limit and timeout.

That process comes from the sweep's fork server (w2vprof.sweep.launch), which has already imported torch, so the
calibration costs its measurement only: as a fresh `w2vprof devices --calibrate` it also paid an interpreter and
torch's import (3.3 s of CPU on the 2-core development VM), the one cost of a first sweep that a second one does
not pay besides the measurement itself. It is the only first-run cost a sweep has (docs/install.md), so it is a
named step: `announce` says what is measured, its time budget, and where it is cached before it starts.

A calibration that fails or cannot be cached leaves the rows' ceiling columns empty; the sweep goes on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.devices.calibrate import Calibration

__all__ = [
    "CALIBRATION_TIMEOUT_S",
    "calibrating_message",
    "calibration_entry",
    "ensure_calibration",
    "measure_in_child",
    "write_calibration",
]

#: A calibration takes seconds (a few more on a small board); past this something is wrong.
CALIBRATION_TIMEOUT_S = 600.0

#: (device, threads, identity, cache folder) -> (the calibration, or None, and why not).
MeasureCalibration = Callable[[str, int, Dict[str, Any], Path], Tuple[Optional["Calibration"], str]]


def calibrating_message(path: Path, budget_s: float) -> str:
    """The progress step a sweep shows before it calibrates (only then: a cached calibration costs nothing)."""
    return (
        f"calibrating this machine: up to {budget_s:.0f} s, once (matmul and memory-copy ceilings for every row; "
        f"cached in {path}; `w2vprof devices --calibrate` after installing does it ahead)"
    )


def ensure_calibration(
    device: str,
    threads: Optional[int] = None,
    identity: Optional[Dict[str, Any]] = None,
    measure: Optional[MeasureCalibration] = None,
    announce: Optional[Callable[[str], None]] = None,
    clock: Callable[[], float] = time.monotonic,
) -> Tuple[Optional[Calibration], str]:
    """(the calibration the children will find, what happened) or (None, why not).

    `threads`: the sweep's --threads; None means this process's count (a sweep sets none of its own, so it is
    torch's default, the children's too). `announce` is told the progress step before a calibration is measured.
    `measure` stands in for the calibration process in tests (default: `measure_in_child`), `clock` for time.
    """
    import torch

    from w2vprof.devices import identify
    from w2vprof.devices.calibrate import TOTAL_BUDGET_SEC, cache_folder, cache_path, cached_calibration

    threads = threads or torch.get_num_threads()
    identity = identity if identity is not None else identify(device)
    folder = cache_folder()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)  # the cache entry is per thread count: look for the children's
    try:
        cached = cached_calibration(device, folder=folder, identity=identity)
    finally:
        torch.set_num_threads(previous)
    if cached is not None:
        return cached, "cached"
    path = cache_path(str(identity.get("device_fingerprint", "")), threads, folder)
    if announce is not None:
        announce(calibrating_message(path, TOTAL_BUDGET_SEC))
    started = clock()
    calibration, why_not = (measure or measure_in_child)(device, threads, identity, folder)
    if calibration is None:
        return None, why_not
    took = f"measured in {clock() - started:.1f} s"
    if "not cached" in calibration.note:
        return calibration, f"{took}, but the configurations cannot read it ({calibration.note})"
    note = f" ({calibration.note})" if calibration.note else ""  # a size cut to the budget, a busy machine
    return calibration, f"{took}, once: cached in {path}{note}"


def measure_in_child(
    device: str,
    threads: int,
    identity: Dict[str, Any],
    folder: Path,
    context: Any = None,
    timeout_s: float = CALIBRATION_TIMEOUT_S,
    **calibrate_options: Any,
) -> Tuple[Optional[Calibration], str]:
    """Calibrate in a process of the sweep's own (see the module's doc) and read back what it wrote.

    `context`: the multiprocessing context it comes from (default: the sweep's, w2vprof.sweep.launch);
    `calibrate_options` go to w2vprof.devices.calibrate.calibrate (tests shrink the measurement with them).
    """
    import tempfile

    from w2vprof.sweep.launch import process_context

    context = context if context is not None else process_context()
    with tempfile.TemporaryDirectory(prefix="w2vprof-calibration-") as scratch:
        result_path = os.path.join(scratch, "calibration.json")
        stderr_path = os.path.join(scratch, "stderr.txt")
        args = (stderr_path, device, threads, identity, folder, Path(result_path))
        process = context.Process(target=calibration_entry, args=args, kwargs=calibrate_options, daemon=True)
        try:
            process.start()
        except OSError as exc:
            return None, f"calibration did not run: {exc}"
        try:
            process.join(timeout_s)
            if process.exitcode is None:
                return None, f"calibration did not finish within {timeout_s:g} s"
        finally:
            if process.exitcode is None:  # over the time limit, or the sweep was interrupted: never left measuring
                process.kill()
                process.join()
        return _read_back(int(process.exitcode), Path(result_path), Path(stderr_path))


def _read_back(exit_code: int, result_path: Path, stderr_path: Path) -> Tuple[Optional[Calibration], str]:
    """The calibration a child wrote, or (None, its error's last line)."""
    from w2vprof.devices.calibrate import Calibration

    if exit_code == 0:
        try:
            return Calibration.from_json(result_path.read_text(encoding="utf-8")), "measured"
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
            return None, f"calibration wrote no calibration: {exc}"
    try:
        lines = stderr_path.read_text(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    ending = f"ended by signal {-exit_code}" if exit_code < 0 else f"exit status {exit_code}"
    return None, f"calibration failed: {lines[-1] if lines else ending}"


def calibration_entry(stderr_path: str, *write_args: Any, **calibrate_options: Any) -> None:
    """The calibration process's target: `write_calibration`, its stderr (warnings, an error's traceback) sent to
    `stderr_path`, whose last line the sweep reports if it fails."""
    err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(err, 2)
    os.close(err)
    write_calibration(*write_args, **calibrate_options)


def write_calibration(
    device: str,
    threads: int,
    identity: Dict[str, Any],
    folder: Path,
    result_path: Path,
    **calibrate_options: Any,
) -> None:
    """Calibrate at `threads` threads (the cached one if another process just made it) into the cache `folder`,
    and write it as JSON to `result_path`."""
    import torch

    from w2vprof.devices.calibrate import load_or_calibrate
    from w2vprof.files import write_text_atomic

    torch.set_num_threads(threads)  # the rates, and the cache entry, are per thread count
    calibration = load_or_calibrate(device, folder=folder, identity=dict(identity), **calibrate_options)
    write_text_atomic(result_path, calibration.to_json())
