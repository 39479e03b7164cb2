"""Peak memory, the one owner: the process's resident set (Linux /proc, getrusage elsewhere), the CUDA allocator's
high-water mark and the MPS driver's allocation (sampled: MPS has no peak API).

The RSS high-water mark (VmHWM) can be reset on Linux >= 4 by writing 5 to /proc/self/clear_refs; where that is
not allowed, the peak includes everything since the process started (model build included), and the source says
so. Readers take a /proc/<pid> root so tests feed them fake trees. Used by the measurement engine (peak of the
timed steps) and by federated clients (peak of a round, w2vprof.fl.memory).

Three figures per configuration, each answering its own question:
- `peak_mem_bytes` (StepPeakMemory): the allocator's peak (`peak_mem_source` names which): CUDA's tensors only,
  MPS's driver allocation, the resident set on CPU.
- `sys_peak_mem_bytes` (SystemPeakMemory): how much of the machine's RAM the training took at its peak. CPU and
  discrete GPUs: the process's resident high-water mark (VmHWM, reset before the timed steps; on a discrete GPU
  this is the host side only). Unified memory (Jetson: the GPU allocates from the same RAM, and its allocations,
  the CUDA context and kernels are not in the resident set):

      sys_peak = max(VmHWM, RSS_start + cuda_reserved_start + (MemAvailable_start - lowest MemAvailable))

  where _start is read right before the first timed step and MemAvailable is sampled every 50 ms during the steps.
  RSS_start + cuda_reserved_start is the process's footprint going in (CPU side and everything torch's allocator
  holds); the drop adds whatever grew during the steps (allocator growth, workspaces, CPU side). Not in it: a CUDA
  context created before the steps (tens to a few hundred MB), unless it grew during them; the drop includes other
  processes' growth, so on a busy board it is an upper bound.
- `cuda_context_bytes` (discrete GPUs): NVML's device memory for this process minus torch's reserve, read after
  the timed steps: the CUDA context, kernels and anything allocated outside torch's allocator.

w2vprof.analysis.feasibility.fit_mem_bytes(record) picks the one that answers "does this configuration fit on its
device": the system figure on CPU and unified memory, the allocator's reserve at its peak plus the context on
discrete GPUs.
"""

from __future__ import annotations

import importlib
import os
import resource
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.records import ResultRecord

__all__ = [
    "PROC_SELF",
    "RSS_SOURCE_NONE",
    "RSS_SOURCE_RUSAGE",
    "RSS_SOURCE_VMHWM",
    "SYS_SOURCE_UNIFIED",
    "PeakReading",
    "StepPeakMemory",
    "SystemPeak",
    "SystemPeakMemory",
    "cuda_context_bytes",
    "nvml_process_used_bytes",
    "read_status_kib",
    "reset_rss_peak",
    "rss_bytes",
    "rss_peak",
    "tensor_bytes",
    "unified_memory",
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


# -- the system-level peak ---------------------------------------------------------------------------------------
SYS_SOURCE_UNIFIED = "rss+cuda_reserved+memavailable_drop"  # the unified-memory formula (module docstring)


def unified_memory(record: ResultRecord) -> bool:
    """Whether the record's device allocates from the OS's RAM (Jetson, Apple silicon).

    w2vprof.devices.identify marks those devices by their memory ceiling: what the OS has available.
    """
    return record.memory_ceiling_source == "os_available"


@dataclass(frozen=True)
class SystemPeak:
    bytes: Optional[int]
    source: str  # the record's sys_peak_mem_source


def _hwm_source(how: str, reset: bool) -> str:
    if how == RSS_SOURCE_VMHWM:
        return "vmhwm" if reset else "vmhwm_since_process_start"
    return "ru_maxrss_since_process_start" if how == RSS_SOURCE_RUSAGE else RSS_SOURCE_NONE


class SystemPeakMemory:
    """How much of the machine's RAM a run of steps took at its peak: start() right before them, stop() after.

    `unified`: the GPU allocates from the same RAM (then MemAvailable is sampled in a thread during the steps; see
    the module docstring for the formula). `root` is the filesystem root (a fake tree in tests).
    """

    def __init__(
        self, device: str, unified: bool, root: str = "/", torch_module: Any = None, interval_s: float = 0.05
    ) -> None:
        self.device = device
        self.unified = unified
        self.root = root
        self._proc = Path(root) / "proc" / "self"
        self._torch = torch_module
        self._interval_s = interval_s
        self._hwm_reset = False
        self._footprint_start: Optional[int] = None
        self.sampler: Any = None  # the MemAvailableSampler while a unified-memory window is open

    def _reserved_bytes(self) -> int:
        if self.device != "cuda":
            return 0
        if self._torch is None:
            import torch

            self._torch = torch
        return int(self._torch.cuda.memory_reserved())

    def start(self) -> None:
        from w2vprof.devices.sysmem import MemAvailableSampler

        self._hwm_reset = reset_rss_peak(self._proc)
        if not self.unified:
            return
        resident = rss_bytes(self._proc)
        self._footprint_start = resident + self._reserved_bytes() if resident is not None else None
        self.sampler = MemAvailableSampler(self.root, self._interval_s)
        self.sampler.start()

    def stop(self) -> SystemPeak:
        drop = self.sampler.stop() if self.sampler is not None else None
        self.sampler = None
        hwm, how = rss_peak(self._proc)
        if drop is None or self._footprint_start is None:  # not unified, or no /proc/meminfo (macOS)
            return SystemPeak(hwm, _hwm_source(how, self._hwm_reset) if hwm is not None else RSS_SOURCE_NONE)
        return SystemPeak(max(self._footprint_start + drop, hwm or 0), SYS_SOURCE_UNIFIED)


# -- discrete GPUs: the CUDA context ------------------------------------------------------------------------------
#: NVML's "not available" for usedGpuMemory (e.g. under WSL or without the rights to see the process).
_NVML_VALUE_NOT_AVAILABLE = 2**64 - 1


def nvml_process_used_bytes(
    pid: int, pynvml_module: Any = None, properties: Any = None, environ: Optional[Mapping[str, str]] = None
) -> Optional[int]:
    """Device memory NVML reports for process `pid` on the GPU torch calls cuda:0; None where NVML cannot say
    (no nvidia-ml-py or driver, or NVML does not list the pid: in a container it lists the host's process ids).

    pynvml_module, properties (torch's device properties) and environ are for tests.
    """
    from w2vprof.devices.nvml import nvml_handle_for_cuda

    try:
        pynvml = pynvml_module or importlib.import_module("pynvml")
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no pynvml, no driver: no reading
        return None
    try:
        if properties is None:
            import torch

            properties = torch.cuda.get_device_properties(0)
        handle, _why_not = nvml_handle_for_cuda(pynvml, properties, os.environ if environ is None else environ)
        processes = pynvml.nvmlDeviceGetComputeRunningProcesses(handle) if handle is not None else []
    except Exception:  # noqa: BLE001 - NVMLError of any kind, or no CUDA device: no reading
        return None
    finally:
        _shut_down(pynvml)
    used = [p.usedGpuMemory for p in processes if int(p.pid) == pid]
    if not used or used[0] is None or used[0] >= _NVML_VALUE_NOT_AVAILABLE:
        return None
    return int(used[0])


def _shut_down(pynvml: Any) -> None:
    """Release this call's NVML reference (nvmlInit counts them; another user keeps NVML running)."""
    try:
        pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - nothing to do about a failed shutdown
        pass


def cuda_context_bytes(torch_module: Any = None, pynvml_module: Any = None, properties: Any = None) -> Optional[int]:
    """This process's device memory outside torch's allocator (the CUDA context, kernels, libraries' own memory):
    NVML's per-process figure minus torch's reserve now; None where NVML cannot say."""
    used = nvml_process_used_bytes(os.getpid(), pynvml_module, properties)
    if used is None:
        return None
    if torch_module is None:
        import torch as torch_module
    return max(used - int(torch_module.cuda.memory_reserved()), 0)
