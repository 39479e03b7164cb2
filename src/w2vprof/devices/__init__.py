"""Device detection and identity, and which telemetry sources this machine offers (and why not the others).

Which torch device a setting means (auto, cpu, cuda, mps): `resolve_device` (w2vprof.devices.resolve).
Every reader takes a filesystem root (a fake tree in tests), NVML an injectable `Nvml`, and `vcgencmd` an
injectable runner. Telemetry during timed steps: `w2vprof.devices.telemetry.TelemetrySampler`.
"""

from __future__ import annotations

import hashlib
import os
import platform as platform_module
import socket
from typing import Any, Optional, Tuple

from w2vprof.devices import cpu, jetson, sensors
from w2vprof.devices.detect import detect_platform
from w2vprof.devices.devicetree import board_name
from w2vprof.devices.nvml import Nvml, load_nvml
from w2vprof.devices.resolve import resolve_device

__all__ = ["identify", "available_sources", "detect_platform", "resolve_device"]


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


#: (source, available, what it reads or why not): one row of the telemetry sources `w2vprof devices` lists.
Source = Tuple[str, bool, str]


def available_sources(
    torch_device: str, root: str = "/", nvml: Optional[Nvml] = None, vcgencmd: Optional[sensors.CommandRunner] = None
) -> list[Source]:
    """(source, available, what it reads or why not) for every telemetry source w2vprof knows, on this machine."""
    platform = detect_platform(root, torch_device)
    is_jetson, is_pi = platform == "jetson", platform == "raspberrypi"
    rows = [
        _rapl_source(root),
        _nvml_source(is_jetson, nvml),
        _ina3221_source(root, is_jetson),
        _tegrastats_source(root, is_jetson),
        *_raspberry_pi_sources(is_pi, vcgencmd),
        _temperature_source(root),
        _cpufreq_source(root),
    ]
    if is_jetson:
        rows.append(_devfreq_source(root))
    if torch_device == "mps":
        rows.append(("mps", True, "memory sampled with torch.mps.driver_allocated_memory after each step"))
    return rows


def _rapl_source(root: str) -> Source:
    domains, why_not = sensors.rapl_domains(root)
    return "rapl", bool(domains), "energy: CPU " + ", ".join(d.name for d in domains) if domains else why_not


def _nvml_source(is_jetson: bool, nvml: Optional[Nvml]) -> Source:
    if is_jetson:
        return "nvml", False, "NVML does not work on Jetson (before JetPack 7; NotSupported for most calls on 7)"
    gpu, why_not = (nvml, "") if nvml is not None else load_nvml()
    if gpu is None:
        return "nvml", False, why_not
    reads = "energy counter" if gpu.energy_mj() is not None else "power sampling (no energy counter)"
    return "nvml", True, f"{gpu.name()}, driver {gpu.driver_version()}: {reads}, temperature, SM clock"


def _ina3221_source(root: str, is_jetson: bool) -> Source:
    rails = jetson.read_ina3221_mw(root)
    if not rails:
        return "ina3221", False, "no readable INA3221 rails in sysfs" if is_jetson else "not a Jetson"
    listed = ", ".join(f"{name} {mw:.0f} mW" for name, mw in rails.items())
    return "ina3221", True, f"board power ({jetson.ina3221_layout(root)} layout): {listed}"


def _tegrastats_source(root: str, is_jetson: bool) -> Source:
    if not is_jetson:
        return "tegrastats", False, "not a Jetson"
    binary = os.path.exists(os.path.join(root, "usr/bin/tegrastats"))
    return (
        "tegrastats",
        True,
        "Jetson: lines parsed by w2vprof.devices.jetson.parse_tegrastats; "
        + ("used for power when INA3221 is unreadable" if binary else "no /usr/bin/tegrastats here"),
    )


def _raspberry_pi_sources(is_pi: bool, vcgencmd: Optional[sensors.CommandRunner]) -> list[Source]:
    """The Pi 5 PMIC's power rails and vcgencmd's throttle bits (both read through vcgencmd, in that order)."""
    if not is_pi:
        return [("pmic", False, "not a Raspberry Pi"), ("vcgencmd", False, "not a Raspberry Pi")]
    pmic_w = sensors.parse_pmic_read_adc(sensors.run_vcgencmd("pmic_read_adc", runner=vcgencmd) or "")
    throttle = sensors.parse_throttled(sensors.run_vcgencmd("get_throttled", runner=vcgencmd) or "")
    return [
        (
            "pmic",
            pmic_w is not None,
            f"Pi 5 PMIC rails: {pmic_w:.2f} W now"
            if pmic_w is not None
            else "no power sensor on this Pi (only the Pi 5 has one)",
        ),
        (
            "vcgencmd",
            throttle is not None,
            f"throttle bits {throttle.value:#x}" if throttle is not None else "vcgencmd get_throttled failed",
        ),
    ]


def _temperature_source(root: str) -> Source:
    temps, temp_source = sensors.read_temperatures_c(root)
    name = "thermal_zone" if temp_source != "hwmon" else "hwmon"
    if not temps:
        return name, False, "no readable /sys/class/thermal zones or hwmon temperature sensors"
    return name, True, f"hottest {max(temps.values()):.1f} C of {len(temps)} sensor(s)"


def _cpufreq_source(root: str) -> Source:
    clock = sensors.cpu_freq_mhz(root)
    if clock is None:
        return "cpufreq", False, "no cpufreq in /sys/devices/system/cpu (virtual machines usually hide it)"
    return "cpufreq", True, f"mean CPU clock {clock:.0f} MHz"


def _devfreq_source(root: str) -> Source:
    gpu_clock = jetson.read_gpu_clock_mhz(root)
    if gpu_clock is None:
        return "devfreq", False, "no GPU devfreq node found"
    return "devfreq", True, f"GPU clock {gpu_clock:.0f} MHz"
