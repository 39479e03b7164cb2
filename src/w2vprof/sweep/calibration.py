"""A sweep's calibration: this machine's measured ceilings, once per sweep, cached per device fingerprint.

Every configuration child reads the calibration from the cache (w2vprof.measure.diagnostics, `cached`) and
records its fields in its row. So before the first configuration the sweep makes sure the cache holds one for
the thread count the children will use: the cached one when there is one (no cost), else one measured now by
`w2vprof devices --calibrate` in a process of its own. A process of its own because nothing else may run while
the ceilings are measured (the sweep's own process only waits), because the sweep's process must not hold device
memory while configurations run (on CUDA the measurement makes a context and buffers), and because a child
measuring it instead would run it under the configuration's memory limit and timeout.

A calibration that fails or cannot be cached leaves the rows' ceiling columns empty; the sweep goes on.
"""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.devices.calibrate import Calibration

__all__ = ["CALIBRATION_TIMEOUT_S", "ensure_calibration", "calibration_command"]

#: A calibration takes seconds (a few more on a small board); past this something is wrong.
CALIBRATION_TIMEOUT_S = 600.0

Run = Callable[..., Any]  # subprocess.run's signature


def calibration_command(device: str, threads: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "w2vprof.cli.main",
        "devices",
        "--calibrate",
        "--device",
        device,
        "--threads",
        str(threads),
        "--format",
        "json",
    ]


def ensure_calibration(
    device: str, threads: Optional[int] = None, identity: Optional[dict[str, Any]] = None, run: Run = subprocess.run
) -> tuple[Optional[Calibration], str]:
    """(the calibration the children will find, what happened) or (None, why not).

    `threads`: the sweep's --threads; None means this process's count (a sweep sets none of its own, so it is
    torch's default, the children's too). `run` stands in for subprocess.run in tests.
    """
    import torch

    from w2vprof.devices.calibrate import Calibration, cached_calibration

    threads = threads or torch.get_num_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)  # the cache entry is per thread count: look for the children's
    try:
        cached = cached_calibration(device, identity=identity)
    finally:
        torch.set_num_threads(previous)
    if cached is not None:
        return cached, "cached"
    try:
        done = run(calibration_command(device, threads), capture_output=True, text=True, timeout=CALIBRATION_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"calibration did not run: {exc}"
    if done.returncode != 0:
        lines = (done.stderr or "").strip().splitlines()
        return None, f"calibration failed: {lines[-1] if lines else f'exit status {done.returncode}'}"
    try:
        calibration = Calibration.from_json(done.stdout)
    except (ValueError, TypeError) as exc:
        return None, f"calibration printed no calibration: {exc}"
    if "not cached" in calibration.note:
        return calibration, f"measured, but the configurations cannot read it ({calibration.note})"
    return calibration, "measured"
