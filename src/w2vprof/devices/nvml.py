"""NVIDIA discrete GPUs through NVML, behind a thin interface so tests (and machines without a driver) use a fake.

pynvml (package nvidia-ml-py) is imported only by `load_nvml`, never at module import. NVML numbers GPUs by PCI
bus; CUDA (and so torch) fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, and only those in
CUDA_VISIBLE_DEVICES. So torch's cuda:0 is found in NVML by its UUID or PCI bus id, never by its index.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Mapping, Optional, Protocol

__all__ = [
    "Nvml",
    "PynvmlDevice",
    "load_nvml",
    "nvml_handle_for_cuda",
    "cuda_device_identity",
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


#: load_nvml's default for `properties`: ask torch (None means "torch has none").
_FROM_TORCH: Any = object()


def decode_throttle_bits(bits: int) -> list[str]:
    """The throttling reasons set in a clock-event-reasons value (0x21 -> ['software thermal slowdown'])."""
    return [name for bit, name in THROTTLE_REASONS.items() if bits & bit]


class Nvml(Protocol):
    """One GPU. Every reading returns None where the GPU or driver does not support it."""

    def name(self) -> str: ...
    def driver_version(self) -> str: ...
    def energy_mj(self) -> Optional[int]: ...  # since driver load (Volta and newer)
    def power_mw(self) -> Optional[float]: ...
    def temperature_c(self) -> Optional[float]: ...
    def sm_clock_mhz(self) -> Optional[float]: ...
    def throttle_bits(self) -> Optional[int]: ...  # clock-event reasons, all bits


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


def cuda_device_identity(properties: Any) -> tuple[str, str]:
    """(UUID as NVML spells it, PCI bus id as NVML spells it) of one torch CUDA device's properties; '' if absent.

    torch prints the UUID without NVML's `GPU-` prefix; the PCI bus id is built from its three numbers, the
    domain 8 hex digits wide as NVML writes it (`00000000:3B:00.0`).
    """
    uuid = str(getattr(properties, "uuid", None) or "")
    if uuid and not uuid.startswith(("GPU-", "MIG-")):
        uuid = "GPU-" + uuid
    domain, bus, device = (getattr(properties, name, None) for name in ("pci_domain_id", "pci_bus_id", "pci_device_id"))
    if isinstance(domain, int) and isinstance(bus, int) and isinstance(device, int):
        return uuid, f"{domain:08X}:{bus:02X}:{device:02X}.0"
    return uuid, ""


def _environment_handle(pynvml: Any, environ: Mapping[str, str]) -> tuple[Any, str]:
    """cuda:0 from CUDA_VISIBLE_DEVICES alone (torch's properties unavailable): only where it cannot be another GPU."""
    first = environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if first.startswith(("GPU-", "MIG-")):
        return pynvml.nvmlDeviceGetHandleByUUID(first), ""
    if pynvml.nvmlDeviceGetCount() == 1:
        return pynvml.nvmlDeviceGetHandleByIndex(0), ""
    if environ.get("CUDA_DEVICE_ORDER", "FASTEST_FIRST") == "PCI_BUS_ID":  # CUDA counts as NVML does
        return pynvml.nvmlDeviceGetHandleByIndex(int(first) if first.isdigit() else 0), ""
    return None, (
        "cannot tell which NVML device is cuda:0: CUDA orders GPUs fastest first, NVML by PCI bus, and torch "
        "gave no UUID or PCI bus id (set CUDA_DEVICE_ORDER=PCI_BUS_ID)"
    )


def nvml_handle_for_cuda(pynvml: Any, properties: Any, environ: Mapping[str, str]) -> tuple[Any, str]:
    """(NVML handle of the GPU torch calls cuda:0, '') or (None, why not). Raises pynvml's errors.

    Matched by UUID, else PCI bus id: both name one physical GPU whatever CUDA_VISIBLE_DEVICES and
    CUDA_DEVICE_ORDER say (NVML ignores both). A MIG instance falls back to its parent GPU's PCI bus id, whose
    energy and temperature are the whole GPU's.
    """
    uuid, bus_id = cuda_device_identity(properties) if properties is not None else ("", "")
    if uuid:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(uuid), ""
        except pynvml.NVMLError:
            if not bus_id:
                raise
    if bus_id:
        return pynvml.nvmlDeviceGetHandleByPciBusId(bus_id), ""
    return _environment_handle(pynvml, environ)


def _torch_properties(torch_index: int) -> Any:
    """torch.cuda.get_device_properties(torch_index), or None without torch or a usable CUDA device."""
    try:
        import torch

        return torch.cuda.get_device_properties(torch_index) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - no torch, a CPU build, an index out of range: fall back to the environment
        return None


def load_nvml(
    torch_index: int = 0,
    *,
    pynvml_module: Any = None,
    properties: Any = _FROM_TORCH,
    environ: Optional[Mapping[str, str]] = None,
) -> tuple[Optional[Nvml], str]:
    """(the GPU torch calls cuda:TORCH_INDEX, '') or (None, why NVML is unavailable). Never raises.

    pynvml_module, properties (torch's device properties, None for none) and environ are for tests; by default
    pynvml is imported here, the properties come from torch and the environment is os.environ.
    """
    pynvml = pynvml_module
    if pynvml is None:
        try:
            pynvml = importlib.import_module("pynvml")
        except ImportError:
            return None, "nvidia-ml-py (pynvml) is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...: pynvml raises many kinds
        return None, f"NVML cannot start ({exc}): no NVIDIA driver on this machine"
    if properties is _FROM_TORCH:
        properties = _torch_properties(torch_index)
    try:
        handle, why_not = nvml_handle_for_cuda(pynvml, properties, os.environ if environ is None else environ)
    except Exception as exc:  # noqa: BLE001 - any NVML error here means no handle; the line says which
        return None, f"NVML has no GPU for cuda:{torch_index} ({exc})"
    return (PynvmlDevice(pynvml, handle), "") if handle is not None else (None, why_not)
