"""System-level memory for unified-memory devices (Jetson, and any board whose GPU allocates from the OS's RAM).

There the allocator's peak (`torch.cuda.max_memory_allocated`) leaves out the CUDA context, kernels, the
allocator's reserve and the process's CPU side, all taken from the same RAM. What answers "does it fit" is how
far the whole system's available memory fell while the steps ran, and the process's resident high-water mark:

    sampler = MemAvailableSampler(root="/")
    sampler.start()                      # right before the timed steps: the baseline
    ...                                  # timed steps (a thread samples MemAvailable every interval_s)
    drop_bytes = sampler.stop()          # baseline - lowest MemAvailable seen; None where unreadable
    hwm_bytes = read_vm_hwm_bytes()      # the process's VmHWM

Every reader is a function of a filesystem root, so tests use fake /proc trees. MemAvailable is the kernel's
estimate of memory available without swapping (Linux 3.14+); the drop includes other processes' growth during
the window, so it is an upper bound for this process on a busy machine.
"""

from __future__ import annotations

import re
import threading
from typing import Optional, Union

from w2vprof.devices._fs import read_text
from w2vprof.devices.cpu import parse_meminfo

__all__ = ["read_mem_available_bytes", "read_vm_hwm_bytes", "MemAvailableSampler"]


def read_mem_available_bytes(root: str = "/") -> Optional[int]:
    """MemAvailable of /proc/meminfo in bytes; None without the file or the field (kernels before 3.14)."""
    return parse_meminfo(read_text(root, "/proc/meminfo") or "").get("MemAvailable")


def read_vm_hwm_bytes(root: str = "/", pid: Union[int, str] = "self") -> Optional[int]:
    """The process's peak resident memory (VmHWM of /proc/PID/status) in bytes; None where there is none."""
    match = re.search(r"^VmHWM:\s+(\d+)\s*kB", read_text(root, f"/proc/{pid}/status") or "", re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


class MemAvailableSampler:
    """The drop in MemAvailable over one window: the reading at start() minus the lowest one until stop().

    A background thread reads /proc/meminfo every interval_s (one small file read); start() and stop() read it
    too, so a window shorter than the interval is still measured at its edges. A dip shorter than the interval
    between two polls can be missed.
    """

    def __init__(self, root: str = "/", interval_s: float = 0.05) -> None:
        self.root = root
        self.interval_s = interval_s
        self.baseline_bytes: Optional[int] = None
        self.lowest_bytes: Optional[int] = None
        self._thread: Optional[threading.Thread] = None
        self._stop_event = threading.Event()
        self._started = False

    def poll(self) -> None:
        """Take one reading now (the thread calls this; so can a caller between steps)."""
        available = read_mem_available_bytes(self.root)
        if available is not None and (self.lowest_bytes is None or available < self.lowest_bytes):
            self.lowest_bytes = available

    def _run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            self.poll()

    def start(self) -> None:
        self.baseline_bytes = read_mem_available_bytes(self.root)
        self.lowest_bytes = self.baseline_bytes
        self._started = True
        if self.baseline_bytes is None:
            return  # nothing to sample on this machine
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._run, name="w2vprof-memavailable", daemon=True)
        self._thread.start()

    def stop(self) -> Optional[int]:
        """Bytes MemAvailable fell below its start-of-window reading (0 if it never fell); None if unreadable."""
        if not self._started:
            return None
        self._started = False
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.poll()
        if self.baseline_bytes is None or self.lowest_bytes is None:
            return None
        return max(0, self.baseline_bytes - self.lowest_bytes)
