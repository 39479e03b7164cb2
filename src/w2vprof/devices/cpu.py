"""CPU and memory identity from /proc (x86, Jetson and Pi alike)."""
from __future__ import annotations

import os
import re
from w2vprof.devices._fs import read_text

__all__ = [
    "parse_cpu_model", "parse_cpu_vendor", "has_native_bf16", "read_native_bf16", "parse_meminfo", "read_cpu_model",
    "read_os_memory",
]


def parse_cpu_model(cpuinfo: str) -> str:
    """`model name` (x86), else `Hardware` / `Model` (Arm boards), else '' from /proc/cpuinfo text."""
    found: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and value.strip() and key not in found:
            found[key] = value.strip()
    return next((found[key] for key in ("model name", "cpu model", "hardware", "model") if key in found), "")


def parse_cpu_vendor(cpuinfo: str) -> str:
    """`vendor_id` of /proc/cpuinfo (GenuineIntel, AuthenticAMD, ...): present on x86 only."""
    match = re.search(r"^vendor_id\s*:\s*(\S+)", cpuinfo, re.MULTILINE)
    return match.group(1) if match else ""


def has_native_bf16(cpuinfo: str) -> bool:
    """x86 AVX512-BF16 / AMX or Arm BF16 ('bf16' in the flags): otherwise torch emulates bfloat16."""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.lower().startswith(("flags", "features")):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def read_native_bf16(root: str = "/") -> bool:
    return has_native_bf16(read_text(root, "/proc/cpuinfo") or "")


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


def read_os_memory(root: str = "/") -> tuple[int, int]:
    """(total, available) bytes: /proc/meminfo under a fake root that has one, else psutil (also on macOS).

    psutil's `available` on Linux is MemAvailable, so both paths agree on a real machine.
    """
    if os.path.abspath(root) != "/":
        info = parse_meminfo(read_text(root, "/proc/meminfo") or "")
        if "MemTotal" in info and "MemAvailable" in info:
            return info["MemTotal"], info["MemAvailable"]
    import psutil

    memory = psutil.virtual_memory()
    return int(memory.total), int(memory.available)
