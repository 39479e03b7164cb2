"""Generic Linux readers: CPU model, memory, cpufreq clocks and thermal sensors (x86, Jetson and Pi alike)."""
from __future__ import annotations

import os
import re
from typing import Optional

from w2vprof.devices._fs import glob_under, read_number, read_text

__all__ = [
    "parse_cpu_model",
    "parse_cpu_vendor",
    "parse_meminfo",
    "read_cpu_model",
    "read_os_memory",
    "read_cpu_clock_mhz",
    "read_temperatures_c",
    "OFFLINE_BELOW_C",
]

#: Readings below this are "sensor offline" markers (tegrastats prints -256C; sysfs zones -40000 or less),
#: not temperatures a running board can have.
OFFLINE_BELOW_C = -40.0


def parse_cpu_model(cpuinfo: str) -> str:
    """`model name` (x86), else `Hardware` / `Model` (Arm boards), else '' from /proc/cpuinfo text."""
    found: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and value.strip() and key in ("model name", "hardware", "model", "cpu model") and key not in found:
            found[key] = value.strip()
    for key in ("model name", "cpu model", "hardware", "model"):
        if key in found:
            return found[key]
    return ""


def parse_cpu_vendor(cpuinfo: str) -> str:
    """`vendor_id` of /proc/cpuinfo (GenuineIntel, AuthenticAMD, ...): present on x86 only."""
    match = re.search(r"^vendor_id\s*:\s*(\S+)", cpuinfo, re.MULTILINE)
    return match.group(1) if match else ""


def read_cpu_model(root: str = "/") -> str:
    return parse_cpu_model(read_text(root, "/proc/cpuinfo") or "")


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes: {'MemTotal': ..., 'MemAvailable': ...} (the file says kB, meaning KiB)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        match = re.match(r"(\w+):\s+(\d+)\s*(kB)?", line)
        if match:
            values[match.group(1)] = int(match.group(2)) * (1024 if match.group(3) else 1)
    return values


def read_os_memory(root: str = "/") -> tuple[Optional[int], Optional[int]]:
    """(total, available) bytes. On the real root psutil (it also works on macOS); in a fake tree /proc/meminfo."""
    if os.path.abspath(root) == "/":
        import psutil

        memory = psutil.virtual_memory()
        return int(memory.total), int(memory.available)
    info = parse_meminfo(read_text(root, "/proc/meminfo") or "")
    return info.get("MemTotal"), info.get("MemAvailable")


def read_cpu_clock_mhz(root: str = "/") -> Optional[float]:
    """Mean current clock over all CPUs from cpufreq `scaling_cur_freq` (kHz), in MHz; None without cpufreq."""
    clocks = [
        value
        for path in glob_under(root, "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq")
        if (value := read_number(root, path)) is not None
    ]
    return sum(clocks) / len(clocks) / 1000.0 if clocks else None


def read_temperatures_c(root: str = "/") -> tuple[dict[str, float], str]:
    """All readable temperatures in degrees C and their source: thermal zones, else hwmon sensors.

    Both are millidegrees in sysfs. Offline sensors (below OFFLINE_BELOW_C) are dropped.
    """
    zones: dict[str, float] = {}
    for path in glob_under(root, "/sys/class/thermal/thermal_zone*/temp"):
        millidegrees = read_number(root, path)
        zone = os.path.dirname(path)
        name = (read_text(root, zone + "/type") or os.path.basename(zone)).strip()
        if millidegrees is not None and millidegrees / 1000.0 > OFFLINE_BELOW_C:
            zones[name] = millidegrees / 1000.0
    if zones:
        return zones, "thermal_zone"
    sensors: dict[str, float] = {}
    for path in glob_under(root, "/sys/class/hwmon/hwmon*/temp*_input"):
        millidegrees = read_number(root, path)
        chip = (read_text(root, os.path.dirname(path) + "/name") or "hwmon").strip()
        if millidegrees is not None and millidegrees / 1000.0 > OFFLINE_BELOW_C:
            sensors[f"{chip}/{os.path.basename(path)[:-len('_input')]}"] = millidegrees / 1000.0
    return sensors, ("hwmon" if sensors else "")
