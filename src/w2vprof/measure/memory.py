"""Memory readings with their source: process resident set (Linux /proc), CUDA allocator, MPS driver.

The RSS high-water mark (VmHWM) can be reset on Linux >= 4 by writing 5 to /proc/self/clear_refs; where
that is not allowed, the peak includes everything since the process started (model build included), and the
source says so.
"""
from __future__ import annotations

import os
import resource
import sys
from pathlib import Path
from typing import Optional

__all__ = ["reset_rss_peak", "rss_peak_bytes", "rss_bytes", "tensor_bytes"]


def reset_rss_peak(proc: Path = Path("/proc/self")) -> bool:
    """Reset the resident-set high-water mark; False where the OS does not allow it."""
    try:
        (proc / "clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_kib(field: str, proc: Path) -> Optional[int]:
    try:
        for line in (proc / "status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_peak_bytes(proc: Path = Path("/proc/self")) -> int:
    """Peak resident set of this process: VmHWM where /proc has it, else getrusage's ru_maxrss."""
    kib = _status_kib("VmHWM", proc)
    if kib is not None:
        return kib * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, KiB on Linux


def rss_bytes(proc: Path = Path("/proc/self")) -> int:
    kib = _status_kib("VmRSS", proc)
    if kib is not None:
        return kib * 1024
    import psutil

    return int(psutil.Process(os.getpid()).memory_info().rss)


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)
