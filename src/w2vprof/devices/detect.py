"""Which kind of device this is: it decides where identity and telemetry are read from."""

from __future__ import annotations

import os
import platform

from w2vprof.devices._fs import read_text
from w2vprof.devices.cpu import parse_cpu_vendor
from w2vprof.devices.jetson import is_jetson
from w2vprof.devices.sensors import raspberry_pi_model

__all__ = ["detect_platform"]


def detect_platform(root: str = "/", torch_device: str = "cpu") -> str:
    """jetson | raspberrypi | apple | x86 | linux (another Linux, e.g. an Arm server) | other.

    Files under `root` decide, so a fake tree is a fake device; Apple is recognised from the MPS device or,
    on the real root, from macOS itself (macOS has no /proc to read).
    """
    if is_jetson(root):
        return "jetson"
    if raspberry_pi_model(root):
        return "raspberrypi"
    on_real_root = os.path.abspath(root) == "/"
    if torch_device == "mps" or (on_real_root and platform.system() == "Darwin"):
        return "apple"
    cpuinfo = read_text(root, "/proc/cpuinfo")
    if cpuinfo is not None and parse_cpu_vendor(cpuinfo):
        return "x86"
    if on_real_root and platform.machine().lower() in ("x86_64", "amd64", "i686"):
        return "x86"
    return "linux" if cpuinfo is not None else "other"
