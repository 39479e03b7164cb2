"""A thin interface over NVML (nvidia-ml-py, imported as pynvml), so tests can use a fake.

Only the calls w2vprof needs; each returns None where the GPU or driver does not support it.
"""
from __future__ import annotations

from typing import Optional, Protocol

__all__ = ["Nvml", "PynvmlBackend", "open_nvml", "THROTTLE_REASONS"]

#: nvmlDeviceGetCurrentClocksEventReasons bits that mean the GPU was held back (0x1 idle is not throttling).
THROTTLE_REASONS = {
    0x4: "software power cap",
    0x8: "hardware slowdown",
    0x20: "software thermal slowdown",
    0x40: "hardware thermal slowdown",
    0x80: "hardware power brake",
}


class Nvml(Protocol):
    def name(self) -> str: ...
    def driver_version(self) -> str: ...
    def memory_total_bytes(self) -> Optional[int]: ...
    def energy_mj(self) -> Optional[int]: ...
    def power_mw(self) -> Optional[int]: ...
    def temperature_c(self) -> Optional[float]: ...
    def sm_clock_mhz(self) -> Optional[float]: ...
    def throttle_bits(self) -> Optional[int]: ...


class PynvmlBackend:
    """The real NVML, for GPU index `index`."""

    def __init__(self, index: int = 0) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)

    def _call(self, function, *args):
        try:
            return function(self._handle, *args)
        except self._nvml.NVMLError:
            return None

    def name(self) -> str:
        value = self._call(self._nvml.nvmlDeviceGetName)
        return value.decode() if isinstance(value, bytes) else str(value or "")

    def driver_version(self) -> str:
        try:
            value = self._nvml.nvmlSystemGetDriverVersion()
        except self._nvml.NVMLError:
            return ""
        return value.decode() if isinstance(value, bytes) else str(value)

    def memory_total_bytes(self) -> Optional[int]:
        info = self._call(self._nvml.nvmlDeviceGetMemoryInfo)
        return int(info.total) if info is not None else None

    def energy_mj(self) -> Optional[int]:
        return self._call(self._nvml.nvmlDeviceGetTotalEnergyConsumption)

    def power_mw(self) -> Optional[int]:
        return self._call(self._nvml.nvmlDeviceGetPowerUsage)

    def temperature_c(self) -> Optional[float]:
        return self._call(self._nvml.nvmlDeviceGetTemperature, self._nvml.NVML_TEMPERATURE_GPU)

    def sm_clock_mhz(self) -> Optional[float]:
        return self._call(self._nvml.nvmlDeviceGetClockInfo, self._nvml.NVML_CLOCK_SM)

    def throttle_bits(self) -> Optional[int]:
        function = getattr(self._nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            self._nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        return self._call(function) if function else None


def open_nvml(index: int = 0) -> tuple[Optional[Nvml], str]:
    """The NVML backend, or None and why not (no package, no driver, no GPU)."""
    try:
        return PynvmlBackend(index), ""
    except ImportError:
        return None, "nvidia-ml-py (pynvml) is not installed"
    except Exception as exc:  # noqa: BLE001 - pynvml raises its own error types for a missing driver
        return None, f"NVML unavailable: {str(exc) or type(exc).__name__}"
