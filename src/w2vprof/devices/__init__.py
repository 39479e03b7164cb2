"""Device detection and identity, and which telemetry sources this machine offers (and why not the others).

Readers take a filesystem root (and NVML an injectable backend) so tests run on any machine with fake trees.
"""
from __future__ import annotations

import hashlib
import os
import platform
import socket
from typing import Any, Optional

__all__ = ["identify", "available_sources", "cpu_model"]


def cpu_model(root: str = "/") -> str:
    try:
        with open(os.path.join(root, "proc/cpuinfo"), encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine_name(root: str) -> tuple[str, dict[str, Any]]:
    """A human name for the board and extra identity details (Jetson release, Pi model)."""
    from w2vprof.devices import jetson, sensors

    identity = jetson.jetson_identity(root)
    if identity is not None:
        details = f"JetPack {identity['jetpack']}" if identity["jetpack"] else f"L4T {identity['l4t']}"
        if identity["power_mode"]:
            details += f", power mode {identity['power_mode']}"
        return f"{identity['model']} ({details})", {"jetson": identity}
    pi = sensors.raspberry_pi_model(root)
    if pi:
        return pi, {"raspberry_pi": pi}
    return "", {}


def identify(torch_device: str, root: str = "/", nvml=None) -> dict[str, Any]:
    """Identity fields of a ResultRecord for this machine and torch device kind (cpu | cuda | mps)."""
    import psutil

    from w2vprof.devices import jetson

    cpu = cpu_model(root)
    total = int(psutil.virtual_memory().total)
    board, _details = _machine_name(root)
    gpu_name = ""
    ceiling, ceiling_source = total, "os_total"
    unified = jetson.jetson_identity(root) is not None or torch_device == "mps"
    if torch_device == "cuda":
        import torch

        props = torch.cuda.get_device_properties(0)
        gpu_name = props.name
        ceiling, ceiling_source = int(props.total_memory), "cuda_total"
    if unified:
        # Jetson and Apple share memory between CPU and GPU: what the OS leaves available is the real ceiling
        # (torch.cuda.mem_get_info reports MemFree on Jetson, which undercounts).
        ceiling, ceiling_source = int(psutil.virtual_memory().available), "os_available"
    name = board or gpu_name or cpu
    if board and gpu_name and gpu_name not in board:
        name = f"{board} / {gpu_name}"
    fingerprint_text = "|".join([socket.gethostname(), cpu, str(os.cpu_count()), str(total), gpu_name, board, torch_device])
    return {
        "device_name": name,
        "device_fingerprint": hashlib.sha1(fingerprint_text.encode()).hexdigest()[:12],
        "cpu_model": cpu,
        "cpu_cores": os.cpu_count(),
        "total_mem_bytes": total,
        "gpu_name": gpu_name,
        "memory_ceiling_bytes": ceiling,
        "memory_ceiling_source": ceiling_source,
        "hostname": socket.gethostname(),
    }


def available_sources(torch_device: str, root: str = "/", nvml=None, vcgencmd=None) -> list[tuple[str, bool, str]]:
    """(source, available, why) for every telemetry source w2vprof knows."""
    from w2vprof.devices import jetson, sensors
    from w2vprof.devices.nvml import open_nvml

    sources: list[tuple[str, bool, str]] = []
    domains, why = sensors.rapl_domains(root)
    sources.append(("rapl", bool(domains), f"{len(domains)} domain(s): " + ", ".join(d.name for d in domains) if domains else why))

    is_jetson = jetson.jetson_identity(root) is not None
    if nvml is None and not is_jetson:
        nvml, nvml_why = open_nvml()
    else:
        nvml_why = "NVML is not supported on Jetson before JetPack 7" if is_jetson and nvml is None else ""
    if nvml is not None:
        energy = nvml.energy_mj() is not None
        sources.append(("nvml", True, f"{nvml.name()}, driver {nvml.driver_version()}; "
                        + ("energy counter" if energy else "power sampling (no energy counter)")))
    else:
        sources.append(("nvml", False, nvml_why))

    rails = jetson.read_ina3221_mw(root)
    sources.append(("ina3221", bool(rails), ", ".join(f"{k} {v:.0f} mW" for k, v in rails.items()) if rails
                    else "no INA3221 power monitor in sysfs (not a Jetson)"))
    sources.append(("tegrastats", is_jetson, "Jetson: parse lines with w2vprof.devices.jetson.parse_tegrastats"
                    if is_jetson else "not a Jetson"))
    pi = sensors.raspberry_pi_model(root)
    pmic = sensors.run_vcgencmd("pmic_read_adc", runner=vcgencmd) if pi else None
    sources.append(("pmic", bool(pmic and sensors.parse_pmic_read_adc(pmic) is not None),
                    "Raspberry Pi 5 PMIC via vcgencmd" if pmic else ("no power sensor on this Pi (Pi 4 has none)" if pi else "not a Raspberry Pi")))
    temp = sensors.max_thermal_c(root)
    sources.append(("thermal_zone", temp is not None, f"hottest zone {temp:.1f} C" if temp is not None else "no readable thermal zones"))
    clock = sensors.cpu_freq_mhz(root)
    sources.append(("cpufreq", clock is not None, f"mean {clock:.0f} MHz" if clock is not None else "no cpufreq in sysfs (e.g. a VM)"))
    if torch_device == "mps":
        sources.append(("mps", True, "memory sampled with torch.mps.driver_allocated_memory"))
    return sources
