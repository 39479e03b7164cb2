"""What the sweep's memory limit watches in a running child: the memory that can actually run out on its device.

`memory_watcher(device, platform)` chooses one per device; the sweep calls `start(pid)` when a child starts and
`used_bytes(pid)` every poll, and stops the child once that is over the limit.

- CPU (and anything not listed below): resident memory of the child and everything it started (psutil).
- Jetson (CUDA on unified memory): the GPU allocates from the same RAM (NvMap), which resident memory does not
  show; the watcher reports how far the system's MemAvailable has fallen since the child started.
- Discrete CUDA GPUs: device memory per process from NVML (`ProcessGpuMemory`, a callable returning
  {pid: bytes} for the processes on the GPU), summed over the child's process tree. Where NVML is not available
  the watcher falls back to resident memory and says so in `what`.
- MPS: resident memory (Metal allocations on Apple's unified memory are not all counted there; no per-process
  reading of them is wired yet).
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Protocol

__all__ = [
    "MemoryWatcher",
    "ResidentMemory",
    "SystemMemoryDrop",
    "GpuProcessMemory",
    "memory_watcher",
    "process_tree",
]

ProcessGpuMemory = Callable[[], Dict[int, int]]  # typing.Dict: evaluated at import (Python 3.8)


class MemoryWatcher(Protocol):
    what: str  # what is watched, for the message of a stopped configuration ("resident memory", ...)
    source: str  # the record's peak_mem_source for a stopped configuration

    def start(self, pid: int) -> None: ...
    def used_bytes(self, pid: int) -> int: ...


def process_tree(pid: int) -> list[int]:
    """`pid` and every process it started (empty once it has gone)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        return [pid] + [child.pid for child in parent.children(recursive=True)]
    except psutil.Error:
        return []


class ResidentMemory:
    """Resident memory (RSS) of the child and its own children."""

    source = "rss_sampled_by_sweep"

    def __init__(self, what: str = "resident memory") -> None:
        self.what = what

    def start(self, pid: int) -> None:
        pass

    def used_bytes(self, pid: int) -> int:
        import psutil

        total = 0
        for member in process_tree(pid):
            try:
                total += psutil.Process(member).memory_info().rss
            except psutil.Error:
                pass
        return total


class SystemMemoryDrop:
    """How far MemAvailable fell since the child started (unified memory: CPU and GPU share the RAM)."""

    what = "system memory in use (drop in MemAvailable)"
    source = "memavailable_drop_sampled_by_sweep"

    def __init__(self, root: str = "/") -> None:
        self.root = root
        self._baseline: Optional[int] = None

    def _available(self) -> Optional[int]:
        from w2vprof.devices.cpu import read_os_memory

        return read_os_memory(self.root)[1] or None

    def start(self, pid: int) -> None:
        self._baseline = self._available()

    def used_bytes(self, pid: int) -> int:
        available = self._available()
        if self._baseline is None or available is None:
            return 0
        return max(self._baseline - available, 0)


class GpuProcessMemory:
    """Device memory NVML reports for the child's process tree (discrete GPUs)."""

    what = "GPU memory (NVML, per process)"
    source = "nvml_process_sampled_by_sweep"

    def __init__(self, read: ProcessGpuMemory) -> None:
        self._read = read

    def start(self, pid: int) -> None:
        pass

    def used_bytes(self, pid: int) -> int:
        members = set(process_tree(pid))
        return sum(used for owner, used in self._read().items() if owner in members)


def _nvml_process_memory() -> Optional[ProcessGpuMemory]:
    """{pid: bytes} of the processes on the GPU torch calls cuda:0, through pynvml; None where unavailable."""
    try:
        import pynvml
        import torch

        from w2vprof.devices.nvml import nvml_handle_for_cuda

        pynvml.nvmlInit()
        handle, _why = nvml_handle_for_cuda(pynvml, torch.cuda.get_device_properties(0), os.environ)
    except Exception:  # noqa: BLE001 - no pynvml, no driver, no GPU: the caller falls back to resident memory
        return None
    if handle is None:
        return None

    def read() -> dict[int, int]:
        try:
            processes = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except pynvml.NVMLError:
            return {}
        return {int(p.pid): int(p.usedGpuMemory or 0) for p in processes}

    return read


def memory_watcher(
    device: str, platform: str = "", root: str = "/", gpu_memory: Optional[ProcessGpuMemory] = None
) -> MemoryWatcher:
    """The watcher for children measuring on `device` (cpu | cuda | mps) of this `platform` (identify()'s)."""
    if device == "cuda" and platform == "jetson":
        return SystemMemoryDrop(root)
    if device == "cuda":
        read = gpu_memory or _nvml_process_memory()
        if read is not None:
            return GpuProcessMemory(read)
        return ResidentMemory("resident memory (NVML unavailable: GPU memory is not watched)")
    return ResidentMemory()
