"""CPU and memory identity from /proc (x86, Jetson and Pi alike) and, for Arm boards, the device tree.

/proc/cpuinfo is the kernel's, and the kernel is not always the one the process runs on: under qemu-user (an
aarch64 userland on an x86 host, as .ci/arm64-emulated.sh runs w2vprof) it is the host's. So the process's own
machine type (`platform.machine()`, which qemu answers for the emulated CPU) decides which architecture this is,
and a /proc/cpuinfo that describes another one is set aside (`read_own_cpuinfo`): no x86 model name, flag or
bfloat16 feature is ever taken for an aarch64 process's.
"""

from __future__ import annotations

import os
import platform
import re
from typing import Optional

from w2vprof.devices._fs import read_text
from w2vprof.devices.devicetree import soc_name

__all__ = [
    "machine_architecture",
    "cpuinfo_architecture",
    "process_machine",
    "read_own_cpuinfo",
    "parse_cpu_model",
    "parse_cpu_vendor",
    "parse_arm_cores",
    "has_native_bf16",
    "read_native_bf16",
    "parse_meminfo",
    "read_cpu_model",
    "read_os_memory",
    "ARM_CORES",
]

#: (CPU implementer, CPU part) of /proc/cpuinfo -> core name, for the cores of boards w2vprof targets
#: (Arm's and NVIDIA's ids as the Linux kernel's arch/arm64/include/asm/cputype.h lists them).
ARM_CORES = {
    (0x41, 0xC07): "Cortex-A7",
    (0x41, 0xC08): "Cortex-A8",
    (0x41, 0xC09): "Cortex-A9",
    (0x41, 0xC0F): "Cortex-A15",
    (0x41, 0xD03): "Cortex-A53",
    (0x41, 0xD04): "Cortex-A35",
    (0x41, 0xD05): "Cortex-A55",
    (0x41, 0xD07): "Cortex-A57",
    (0x41, 0xD08): "Cortex-A72",
    (0x41, 0xD09): "Cortex-A73",
    (0x41, 0xD0A): "Cortex-A75",
    (0x41, 0xD0B): "Cortex-A76",
    (0x41, 0xD0C): "Neoverse-N1",
    (0x41, 0xD0D): "Cortex-A77",
    (0x41, 0xD40): "Neoverse-V1",
    (0x41, 0xD41): "Cortex-A78",
    (0x41, 0xD42): "Cortex-A78AE",
    (0x41, 0xD44): "Cortex-X1",
    (0x41, 0xD46): "Cortex-A510",
    (0x41, 0xD47): "Cortex-A710",
    (0x41, 0xD48): "Cortex-X2",
    (0x41, 0xD49): "Neoverse-N2",
    (0x41, 0xD4B): "Cortex-A78C",
    (0x41, 0xD4F): "Neoverse-V2",
    (0x41, 0xD80): "Cortex-A520",
    (0x41, 0xD81): "Cortex-A720",
    (0x41, 0xD82): "Cortex-X4",
    (0x41, 0xD83): "Neoverse-V3AE",
    (0x41, 0xD84): "Neoverse-V3",
    (0x4E, 0x000): "Denver",
    (0x4E, 0x003): "Denver 2",
    (0x4E, 0x004): "Carmel",
}


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


#: platform.machine() spellings of x86 (Linux, macOS, Windows).
X86_MACHINES = ("x86_64", "amd64", "x64", "i386", "i486", "i586", "i686", "x86")


def machine_architecture(machine: str) -> str:
    """'x86', 'arm' (aarch64, arm64, armv7l, ...) or '' (another, or unknown) for a platform.machine() value."""
    lowered = machine.lower()
    if lowered in X86_MACHINES:
        return "x86"
    return "arm" if lowered.startswith(("aarch64", "arm")) else ""


def cpuinfo_architecture(cpuinfo: str) -> str:
    """'x86' (a vendor_id or flags line), 'arm' (CPU implementer or Features lines) or '' (it does not say)."""
    if parse_cpu_vendor(cpuinfo) or re.search(r"^flags\s*:", cpuinfo, re.MULTILINE):
        return "x86"
    return "arm" if re.search(r"^(CPU implementer|Features)\s*:", cpuinfo, re.MULTILINE) else ""


def process_machine(root: str = "/", machine: Optional[str] = None) -> str:
    """This process's machine type: `machine` where given, else platform.machine() on the real root; '' under a
    fake root (a test's tree), whose own files then say what it is."""
    if machine is not None:
        return machine
    return platform.machine() if os.path.abspath(root) == "/" else ""


def read_own_cpuinfo(root: str = "/", machine: Optional[str] = None) -> tuple[str, str]:
    """(/proc/cpuinfo, "") where it describes this process's architecture (or does not say), else ("", why):
    under qemu-user the kernel's cpuinfo is the host's, not the emulated CPU's."""
    cpuinfo = read_text(root, "/proc/cpuinfo") or ""
    machine = process_machine(root, machine)
    described = cpuinfo_architecture(cpuinfo)
    if machine and described and machine_architecture(machine) != described:
        return "", f"/proc/cpuinfo describes another architecture ({described}): emulation?"
    return cpuinfo, ""


def has_native_bf16(cpuinfo: str) -> bool:
    """x86 AVX512-BF16 / AMX or Arm BF16 ('bf16' in the flags): otherwise torch emulates bfloat16."""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.lower().startswith(("flags", "features")):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def read_native_bf16(root: str = "/", machine: Optional[str] = None) -> bool:
    """Whether this process's CPU has native bfloat16: never from another architecture's flags (emulation)."""
    return has_native_bf16(read_own_cpuinfo(root, machine)[0])


def parse_arm_cores(cpuinfo: str) -> str:
    """'4x Cortex-A72' (or '4x Cortex-A55 + 4x Cortex-A76') from the `CPU implementer` / `CPU part` of each
    processor in /proc/cpuinfo; '' when there are none or one is not in ARM_CORES (a partial list would mislead)."""
    counts: dict[str, int] = {}
    for block in re.split(r"\n\s*\n", cpuinfo):
        implementer = re.search(r"^CPU implementer\s*:\s*(0x[0-9a-fA-F]+)", block, re.MULTILINE)
        part = re.search(r"^CPU part\s*:\s*(0x[0-9a-fA-F]+)", block, re.MULTILINE)
        if implementer and part:
            name = ARM_CORES.get((int(implementer.group(1), 16), int(part.group(1), 16)))
            if name is None:
                return ""
            counts[name] = counts.get(name, 0) + 1
    return " + ".join(f"{count}x {name}" for name, count in counts.items())


def read_cpu_model(root: str = "/", machine: Optional[str] = None) -> str:
    """x86: `model name`. Arm: the SoC from the device tree and the cores from their part numbers
    ('Broadcom BCM2711, 4x Cortex-A72'), because Pi kernels name every Pi's SoC BCM2835 and a Jetson's
    cpuinfo names nothing; else whatever /proc/cpuinfo names (parse_cpu_model), else ''. Where /proc/cpuinfo
    describes another architecture than this process's (emulation), what is left, or the machine type, with why:
    'aarch64 (/proc/cpuinfo describes another architecture (x86): emulation?)'."""
    cpuinfo, foreign = read_own_cpuinfo(root, machine)
    if parse_cpu_vendor(cpuinfo):
        return parse_cpu_model(cpuinfo)
    described = ", ".join(part for part in (soc_name(root), parse_arm_cores(cpuinfo)) if part)
    described = described or parse_cpu_model(cpuinfo)
    return f"{described or process_machine(root, machine)} ({foreign})" if foreign else described


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
