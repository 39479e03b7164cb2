"""Which kind of device this is: it decides where identity and telemetry are read from."""

from __future__ import annotations

import os
import platform
from typing import Optional

from w2vprof.devices._fs import read_text
from w2vprof.devices.cpu import machine_architecture, parse_cpu_vendor, process_machine
from w2vprof.devices.jetson import is_jetson
from w2vprof.devices.sensors import raspberry_pi_model

__all__ = ["detect_platform"]


def detect_platform(root: str = "/", torch_device: str = "cpu", machine: Optional[str] = None) -> str:
    """jetson | raspberrypi | apple | x86 | linux (another Linux, e.g. an Arm server) | other.

    Files under `root` decide, so a fake tree is a fake device; Apple is recognised from the MPS device or,
    on the real root, from macOS itself (macOS has no /proc to read). Otherwise this process's machine type
    (`machine`, else platform.machine() on the real root: w2vprof.devices.cpu.process_machine) decides between x86
    and the rest, never /proc/cpuinfo alone: under qemu-user an aarch64 process reads the x86 host's.
    """
    if is_jetson(root):
        return "jetson"
    if raspberry_pi_model(root):
        return "raspberrypi"
    on_real_root = os.path.abspath(root) == "/"
    if torch_device == "mps" or (on_real_root and platform.system() == "Darwin"):
        return "apple"
    cpuinfo = read_text(root, "/proc/cpuinfo")
    machine = process_machine(root, machine)
    is_x86 = machine_architecture(machine) == "x86" if machine else bool(parse_cpu_vendor(cpuinfo or ""))
    if is_x86:
        return "x86"
    return "linux" if cpuinfo is not None else "other"
