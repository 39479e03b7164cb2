"""Peak memory of one client round: the process's resident high-water mark, reset at the start of the round.

Simulation reuses one process (a Ray actor) for many clients and rounds, and a deployed SuperNode may reuse its
ClientApp process too, so the lifetime peak would carry over. On Linux writing "5" to /proc/self/clear_refs resets
VmHWM (the peak resident set) to the current resident set; VmHWM read at the end of the round is then the
round's peak. It includes everything resident in the client process: the Python interpreter, torch and
Flower libraries (a few hundred MB before the model exists), the decoded audio, the received and the outgoing
weights, the model, AdamW state, activations and gradients. `start_rss_bytes` (resident set at the start of
the round) is recorded beside it, so peak - start is what the round added.

Readers take a /proc/<pid> root so tests feed them fake trees; the reading itself is w2vprof.measure.memory's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from w2vprof.measure.memory import (
    PROC_SELF,
    RSS_SOURCE_RUSAGE,
    RSS_SOURCE_VMHWM,
    read_status_kib,
    reset_rss_peak,
    rss_bytes,
    rss_peak,
)

__all__ = ["MemorySources", "PeakMemory", "release_free_memory", "reset_peak", "read_status_kib", "read_peak"]


class MemorySources:
    RESET = "vmhwm-reset"  # VmHWM after a per-round reset: the round's peak
    PROCESS = "vmhwm-process"  # reset refused (e.g. a locked-down /proc): the process-lifetime peak
    RUSAGE = "ru_maxrss-process"  # no /proc (macOS, Windows): the process-lifetime peak from getrusage
    NONE = ""


@dataclass
class PeakMemory:
    peak_rss_bytes: Optional[int]
    start_rss_bytes: Optional[int]
    source: str


def release_free_memory() -> bool:
    """Hand memory freed by earlier rounds back to the OS (gc, then glibc's malloc_trim) before the reset.

    Without it the allocator keeps last round's tensors' pages resident, the reset peak starts from there, and
    peak - start shows almost nothing of what the round needs. Best effort: False where there is no glibc.
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        return bool(ctypes.CDLL(name).malloc_trim(0))
    except (OSError, AttributeError):  # musl, macOS: no malloc_trim
        return False


def reset_peak(proc_root: Path = PROC_SELF) -> tuple[bool, Optional[int]]:
    """Reset the resident high-water mark; returns (reset worked, resident set now in bytes)."""
    return reset_rss_peak(proc_root), rss_bytes(proc_root)


def read_peak(reset_worked: bool, start_rss_bytes: Optional[int], proc_root: Path = PROC_SELF) -> PeakMemory:
    peak, kind = rss_peak(proc_root)
    if kind == RSS_SOURCE_VMHWM:
        source = MemorySources.RESET if reset_worked else MemorySources.PROCESS
    else:
        source = MemorySources.RUSAGE if kind == RSS_SOURCE_RUSAGE else MemorySources.NONE
    return PeakMemory(peak, start_rss_bytes, source)
