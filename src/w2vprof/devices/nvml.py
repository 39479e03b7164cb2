"""NVIDIA discrete GPUs through NVML, behind a thin interface so tests (and machines without a driver) use a fake.

pynvml (package nvidia-ml-py) is imported only by `load_nvml`, never at module import.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional, Protocol

__all__ = [
    "Nvml",
    "FakeNvml",
    "PynvmlDevice",
    "load_nvml",
    "THROTTLE_REASONS",
    "decode_throttle_bits",
]

#: nvmlDeviceGetCurrentClocksEventReasons bits that mean the GPU was held back. Not listed, because they are
#: not throttling: 0x1 idle, 0x2 applications clocks setting, 0x10 sync boost, 0x100 display clock setting.
THROTTLE_REASONS = {
    0x4: "software power cap",
    0x8: "hardware slowdown",
    0x20: "software thermal slowdown",
    0x40: "hardware thermal slowdown",
    0x80: "hardware power brake",
}


def decode_throttle_bits(bits: int) -> list[str]:
    """The throttling reasons set in a clock-event-reasons value (0x21 -> ['software thermal slowdown'])."""
    return [name for bit, name in THROTTLE_REASONS.items() if bits & bit]


class Nvml(Protocol):
    """One GPU. Every reading returns None where the GPU or driver does not support it."""

    def name(self) -> str: ...
    def driver_version(self) -> str: ...
    def memory_total_bytes(self) -> Optional[int]: ...
    def energy_mj(self) -> Optional[int]: ...  # since driver load (Volta and newer)
    def power_mw(self) -> Optional[float]: ...
    def temperature_c(self) -> Optional[float]: ...
    def sm_clock_mhz(self) -> Optional[float]: ...
    def throttle_bits(self) -> Optional[int]: ...  # clock-event reasons, all bits


@dataclass
class FakeNvml:
    """A scripted GPU: each reading pops the next value of its list (the last one repeats); None = unsupported."""

    gpu_name: str = "Fake GPU"
    driver: str = "000.00"
    total_bytes: Optional[int] = 16 * 1024**3
    energy_mj_values: list[Optional[int]] = field(default_factory=lambda: [None])
    power_mw_values: list[Optional[float]] = field(default_factory=lambda: [None])
    temperature_values: list[Optional[float]] = field(default_factory=lambda: [None])
    sm_clock_values: list[Optional[float]] = field(default_factory=lambda: [None])
    throttle_bit_values: list[Optional[int]] = field(default_factory=lambda: [None])

    @staticmethod
    def _next(values: list):
        return values.pop(0) if len(values) > 1 else values[0]

    def name(self) -> str:
        return self.gpu_name

    def driver_version(self) -> str:
        return self.driver

    def memory_total_bytes(self) -> Optional[int]:
        return self.total_bytes

    def energy_mj(self) -> Optional[int]:
        return self._next(self.energy_mj_values)

    def power_mw(self) -> Optional[float]:
        return self._next(self.power_mw_values)

    def temperature_c(self) -> Optional[float]:
        return self._next(self.temperature_values)

    def sm_clock_mhz(self) -> Optional[float]:
        return self._next(self.sm_clock_values)

    def throttle_bits(self) -> Optional[int]:
        return self._next(self.throttle_bit_values)


class PynvmlDevice:
    """The real GPU through pynvml; NVMLError (NotSupported and friends) becomes None."""

    def __init__(self, pynvml, handle) -> None:
        self._nvml = pynvml
        self._handle = handle

    def _call(self, function_name: str, *args):
        function = getattr(self._nvml, function_name, None)
        if function is None:  # older nvidia-ml-py without this call
            return None
        try:
            return function(self._handle, *args)
        except self._nvml.NVMLError:
            return None

    def name(self) -> str:
        value = self._call("nvmlDeviceGetName")
        return value.decode() if isinstance(value, bytes) else (value or "")

    def driver_version(self) -> str:
        try:
            value = self._nvml.nvmlSystemGetDriverVersion()
        except self._nvml.NVMLError:
            return ""
        return value.decode() if isinstance(value, bytes) else value

    def memory_total_bytes(self) -> Optional[int]:
        info = self._call("nvmlDeviceGetMemoryInfo")
        return int(info.total) if info is not None else None

    def energy_mj(self) -> Optional[int]:
        return self._call("nvmlDeviceGetTotalEnergyConsumption")

    def power_mw(self) -> Optional[float]:
        return self._call("nvmlDeviceGetPowerUsage")

    def temperature_c(self) -> Optional[float]:
        return self._call("nvmlDeviceGetTemperature", self._nvml.NVML_TEMPERATURE_GPU)

    def sm_clock_mhz(self) -> Optional[float]:
        return self._call("nvmlDeviceGetClockInfo", self._nvml.NVML_CLOCK_SM)

    def throttle_bits(self) -> Optional[int]:
        # Renamed from "ClocksThrottleReasons" in newer drivers; try the new name first.
        value = self._call("nvmlDeviceGetCurrentClocksEventReasons")
        return value if value is not None else self._call("nvmlDeviceGetCurrentClocksThrottleReasons")


def _visible_device_selector() -> tuple[Optional[int], Optional[str]]:
    """(NVML index, UUID) of torch's cuda:0, read from CUDA_VISIBLE_DEVICES (NVML ignores that variable)."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if first.isdigit():
        return int(first), None
    if first.startswith(("GPU-", "MIG-")):
        return None, first
    return 0, None


def load_nvml() -> tuple[Optional[Nvml], str]:
    """(the GPU torch calls cuda:0, '') or (None, why NVML is unavailable). Never raises."""
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py (pynvml) is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: pynvml raises many kinds
        return None, f"NVML cannot start ({exc}): no NVIDIA driver on this machine"
    try:
        index, uuid = _visible_device_selector()
        if uuid is not None:
            handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
        else:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception as exc:
        return None, f"NVML has no GPU for cuda:0 ({exc})"
    return PynvmlDevice(pynvml, handle), ""
