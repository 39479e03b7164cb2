"""Apple silicon: chip name and MPS memory sampling (MPS has no peak-memory API, so callers sample each step)."""
from __future__ import annotations

from typing import Any, Optional

from w2vprof.devices.sensors import CommandRunner, run_command

__all__ = ["apple_chip_name", "sample_mps_memory", "MpsPeakSampler"]


def apple_chip_name(runner: CommandRunner = run_command) -> str:
    """'Apple M2 Pro' from `sysctl -n machdep.cpu.brand_string`, '' where sysctl is not there (not a Mac)."""
    try:
        return runner(["sysctl", "-n", "machdep.cpu.brand_string"]).strip()
    except Exception:  # OSError, a failing exit, a timeout: no name rather than no profile
        return ""


def sample_mps_memory(torch_module: Any = None) -> dict[str, int]:
    """{'current_allocated_bytes', 'driver_allocated_bytes'} of the MPS allocator right now.

    driver_allocated includes Metal's own caches and is what the OS pays; current_allocated is tensors only.
    """
    if torch_module is None:
        import torch as torch_module
    return {
        "current_allocated_bytes": int(torch_module.mps.current_allocated_memory()),
        "driver_allocated_bytes": int(torch_module.mps.driver_allocated_memory()),
    }


class MpsPeakSampler:
    """Highest driver-allocated MPS memory over the samples taken (call sample() after each step, off the clock).

    NB: a peak inside a step, freed before its end, is missed; the error is at most one step's transient tensors.
    """

    def __init__(self, torch_module: Any = None) -> None:
        self._torch = torch_module
        self.peak_bytes: Optional[int] = None

    def sample(self) -> int:
        driver = sample_mps_memory(self._torch)["driver_allocated_bytes"]
        self.peak_bytes = driver if self.peak_bytes is None else max(self.peak_bytes, driver)
        return driver
