"""Device detection and identity, and which telemetry sources this machine offers (and why not the others).

The sources come from the one registry of telemetry sources (w2vprof.devices.sources), which the sampler reads
too. Which torch device a setting means (auto, cpu, cuda, mps): `resolve_device` (w2vprof.devices.resolve).
Every reader takes a filesystem root (a fake tree in tests), NVML an injectable `Nvml`, and `vcgencmd` an
injectable runner. Telemetry during timed steps: `w2vprof.devices.telemetry.TelemetrySampler`.
"""

from __future__ import annotations

import hashlib
import os
import platform as platform_module
import socket
from typing import Any, Optional

from w2vprof.devices import cpu, jetson, sensors
from w2vprof.devices.detect import detect_platform
from w2vprof.devices.devicetree import board_name
from w2vprof.devices.nvml import Nvml, load_nvml
from w2vprof.devices.resolve import resolve_device
from w2vprof.devices.sources import Source, available_sources

__all__ = ["identify", "available_sources", "Source", "detect_platform", "resolve_device"]


def _real_root(root: str) -> bool:
    return os.path.abspath(root) == "/"


def _board(platform: str, root: str) -> tuple[str, dict[str, str]]:
    """The board's name as shown to users, and its identity details (Jetson release and power mode, Pi model)."""
    if platform == "jetson":
        details = jetson.jetson_identity(root) or {}
        parts = [
            f"JetPack {details['jetpack']}" if details.get("jetpack") else "",
            f"L4T {details['l4t']}" if details.get("l4t") else "",
            f"power mode {details['power_mode']}" if details.get("power_mode") else "",
        ]
        described = ", ".join(p for p in parts if p)
        return (f"{details['model']} ({described})" if described else details.get("model", "")), details
    if platform == "raspberrypi":
        model = sensors.raspberry_pi_model(root) or ""
        return model, {"model": model}
    if platform in ("linux", "other"):  # another Arm board names itself in its device tree; servers do not
        model = board_name(root)
        return model, ({"model": model} if model else {})
    return "", {}


def identify(
    torch_device: str, root: str = "/", nvml: Optional[Nvml] = None, machine: Optional[str] = None
) -> dict[str, Any]:
    """Identity of this machine for a torch device kind (cpu | cuda | mps): the ResultRecord identity fields
    (device_name, device_fingerprint, cpu_model, cpu_cores, total_mem_bytes, gpu_name, memory_ceiling_bytes,
    memory_ceiling_source, hostname) plus details for run.json (platform, board, l4t, jetpack, power_mode,
    gpu_driver). `machine`: this process's machine type, platform.machine() where not given (on the real root;
    a fake tree's files describe it): /proc/cpuinfo of another architecture (emulation) is never read as this one's.
    """
    platform = detect_platform(root, torch_device, machine)
    board, details = _board(platform, root)
    cpu_model = cpu.read_cpu_model(root, machine)
    if not cpu_model and platform == "apple":
        from w2vprof.devices.mps import apple_chip_name

        cpu_model = apple_chip_name()
    if not cpu_model and _real_root(root):
        cpu_model = platform_module.processor() or platform_module.machine()
    total, available = cpu.read_os_memory(root)
    gpu_name, gpu_driver = "", ""
    ceiling, ceiling_source = total, "os_total"
    if torch_device == "cuda":
        import torch

        props = torch.cuda.get_device_properties(0)
        gpu_name = props.name
        ceiling, ceiling_source = int(props.total_memory), "cuda_total"
        if platform != "jetson":
            gpu = nvml if nvml is not None else load_nvml()[0]
            gpu_driver = gpu.driver_version() if gpu is not None else ""
    elif torch_device == "mps":
        gpu_name = f"{cpu_model} GPU (MPS)" if cpu_model else "Apple GPU (MPS)"
    if platform in ("jetson", "apple"):
        # Unified memory: the GPU allocates from the OS's RAM, so what the OS has available is the ceiling
        # (on Jetson torch.cuda.mem_get_info reports MemFree, which undercounts reclaimable cache).
        ceiling, ceiling_source = available, "os_available"
    hostname = socket.gethostname()
    fingerprint_parts = [hostname, cpu_model, str(os.cpu_count()), str(total), gpu_name, torch_device]
    if board:  # the same board in another power mode is another device (clocks and power differ)
        fingerprint_parts.append(board)
    return {
        "device_name": board or gpu_name or cpu_model,
        "device_fingerprint": hashlib.sha1("|".join(fingerprint_parts).encode()).hexdigest()[:12],
        "cpu_model": cpu_model,
        "cpu_cores": os.cpu_count(),
        "total_mem_bytes": total,
        "gpu_name": gpu_name,
        "memory_ceiling_bytes": ceiling,
        "memory_ceiling_source": ceiling_source,
        "hostname": hostname,
        "platform": platform,
        "board": board,
        "l4t": details.get("l4t", ""),
        "jetpack": details.get("jetpack", ""),
        "power_mode": details.get("power_mode", ""),
        "gpu_driver": gpu_driver,
    }
