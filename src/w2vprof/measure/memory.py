"""Peak memory, the one owner: the process's resident set (Linux /proc, getrusage elsewhere), the CUDA allocator's
high-water mark and the MPS driver's allocation (sampled: MPS has no peak API).

The RSS high-water mark (VmHWM) can be reset on Linux >= 4 by writing 5 to /proc/self/clear_refs; where that is
not allowed, the peak includes everything since the process started (model build included), and the source says
so. Readers take a /proc/<pid> root so tests feed them fake trees. Used by the measurement engine (peak of the
timed steps) and by federated clients (peak of a round, w2vprof.fl.memory).
"""
from __future__ import annotations

import resource
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

__all__ = [
    "PROC_SELF",
    "RSS_SOURCE_NONE",
    "RSS_SOURCE_RUSAGE",
    "RSS_SOURCE_VMHWM",
    "PeakReading",
    "StepPeakMemory",
    "read_status_kib",
    "reset_rss_peak",
    "rss_bytes",
    "rss_peak",
    "tensor_bytes",
]

PROC_SELF = Path("/proc/self")
RSS_SOURCE_VMHWM = "vmhwm"  # /proc/<pid>/status VmHWM: resettable (see reset_rss_peak)
RSS_SOURCE_RUSAGE = "ru_maxrss"  # no /proc (macOS): getrusage, the process-lifetime peak
RSS_SOURCE_NONE = ""


def read_status_kib(status_text: str, field: str) -> Optional[int]:
    """`VmHWM:\t  123456 kB` -> 123456; None when the line is missing or malformed."""
    for line in status_text.splitlines():
        if line.startswith(field + ":"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1])
    return None


def _status_kib(field: str, proc: Path) -> Optional[int]:
    try:
        text = (proc / "status").read_text()
    except OSError:
        return None
    return read_status_kib(text, field)


def reset_rss_peak(proc: Path = PROC_SELF) -> bool:
    """Reset the resident-set high-water mark to the current resident set; False where the OS does not allow it."""
    try:
        (proc / "clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_bytes(proc: Path = PROC_SELF) -> Optional[int]:
    """Resident set now (VmRSS), or None where there is no /proc."""
    kib = _status_kib("VmRSS", proc)
    return kib * 1024 if kib is not None else None


def rss_peak(proc: Path = PROC_SELF) -> tuple[Optional[int], str]:
    """(peak resident set in bytes, where it came from): VmHWM where /proc has it, else getrusage's ru_maxrss."""
    kib = _status_kib("VmHWM", proc)
    if kib is not None:
        return kib * 1024, RSS_SOURCE_VMHWM
    try:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (OSError, ValueError):
        return None, RSS_SOURCE_NONE
    # NB: ru_maxrss is bytes on macOS and KiB on Linux.
    return (int(peak) if sys.platform == "darwin" else int(peak) * 1024), RSS_SOURCE_RUSAGE


def tensor_bytes(tensors: Iterable[Any]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class PeakReading:
    peak_bytes: Optional[int]
    reserved_bytes: Optional[int]  # CUDA only: the caching allocator's reserve at its peak
    source: str  # the record's peak_mem_source


class StepPeakMemory:
    """The memory high-water mark of a run of steps on one device kind: reset() before them, sample() after each
    (off the clock), read() at the end.

    cuda: the caching allocator's peak (tensors only; the CUDA context and the allocator's slack are not in it).
    mps: the driver's allocation sampled after each step (a peak inside a step, freed before its end, is missed: at
    most one step's transient tensors). cpu: the process's resident high-water mark.
    """

    def __init__(self, device: str, torch_module: Any = None, proc: Path = PROC_SELF) -> None:
        self.device = device
        self._torch = torch_module
        self._proc = proc
        self._sampled = 0
        self._rss_reset = False

    def _torch_module(self) -> Any:
        if self._torch is None:
            import torch

            self._torch = torch
        return self._torch

    def reset(self) -> None:
        self._sampled = 0
        if self.device == "cuda":
            self._torch_module().cuda.reset_peak_memory_stats()
        elif self.device == "cpu":
            self._rss_reset = reset_rss_peak(self._proc)

    def sample(self) -> None:
        if self.device == "mps":
            self._sampled = max(self._sampled, int(self._torch_module().mps.driver_allocated_memory()))

    def read(self) -> PeakReading:
        if self.device == "cuda":
            cuda = self._torch_module().cuda
            return PeakReading(int(cuda.max_memory_allocated()), int(cuda.max_memory_reserved()), "cuda_max_allocated")
        if self.device == "mps":
            return PeakReading(self._sampled, None, "mps_driver_sampled_after_each_step")
        peak, _ = rss_peak(self._proc)
        return PeakReading(peak, None, "rss_hwm" if self._rss_reset else "rss_hwm_since_process_start")
