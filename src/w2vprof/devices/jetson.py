"""NVIDIA Jetson: tegrastats lines of every JetPack format, INA3221 power rails, identity and power mode.

Facts: ../shared/reference/device-telemetry.md. Every reader takes a string or a filesystem root.
"""
from __future__ import annotations

import os
import re
from typing import Any, Optional

from w2vprof.devices._fs import glob_under, read_number, read_text
from w2vprof.devices.cpu import OFFLINE_BELOW_C

__all__ = [
    "MIB",
    "BOARD_RAILS",
    "parse_tegrastats",
    "board_power_mw",
    "parse_l4t_release",
    "parse_device_tree_model",
    "parse_nvpmodel_status",
    "parse_nvpmodel_conf",
    "is_jetson",
    "read_power_mode",
    "read_ina3221_rails_mw",
    "read_gpu_load_pct",
    "read_gpu_clock_mhz",
    "jetson_identity",
]

MIB = 1024 * 1024  # tegrastats' "MB" are MiB (it reports /proc/meminfo kB / 1024)

#: Rails that measure the whole board's input; where none is present the board total is the sum of rails.
BOARD_RAILS = ("VDD_IN", "POM_5V_IN")

# `RAM 4412/7772MB`
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
# `GR3D_FREQ 62%@306`, `GR3D_FREQ 0%@[114]`, `GR3D_FREQ 12%@[1300,1300]`, `GR3D_FREQ 0%` (idle JetPack 6)
_GPU = re.compile(r"\bGR3D_FREQ (\d+)%(?:@\[?(\d+))?")
# `CPU@43.5C`, `cpu@53.968C`, `tj@52C`, `cpu@52.968C/52.968C` (JetPack 7: current/average); the look-behind keeps
# the CPU list (`[9%@1190,...]`) and clocks (`10%@1600`) out.
_TEMP = re.compile(r"(?<![\w@%\[,])([A-Za-z][\w.-]*)@(-?\d+(?:\.\d+)?)C(?:/-?\d+(?:\.\d+)?C)*")
# `VDD_IN 4067/4067` (JetPack 4), `VDD_IN 2763mW/2846mW` (5, 6), `VDD_IN 5139mW/5139mW/5139mW` (7). The
# look-ahead stops `RAM 4412/7772MB` and `SWAP 139/3886MB` from reading as rails.
_RAIL = re.compile(r"(?<![\w@])([A-Za-z]\w*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?(?![\w/])")


def parse_tegrastats(line: str) -> dict[str, Any]:
    """One tegrastats line (JetPack 4 to 7) as numbers; fields it does not know are ignored, never an error.

    Returns ram_used_bytes, ram_total_bytes (None when absent), gpu_load_pct and gpu_clock_mhz (None when absent),
    rails_mw (rail -> current mW), board_power_mw (VDD_IN or POM_5V_IN, else the sum of rails; None without rails:
    tegrastats run without root prints none on some releases) and temps_c (sensor -> degrees C, offline dropped).
    """
    ram = _RAM.search(line)
    gpu = _GPU.search(line)
    temps = {
        name: float(value)
        for name, value in _TEMP.findall(line)
        if float(value) > OFFLINE_BELOW_C  # -256C: the sensor is offline
    }
    rails = {match.group(1): float(match.group(2)) for match in _RAIL.finditer(line)}
    return {
        "ram_used_bytes": int(ram.group(1)) * MIB if ram else None,
        "ram_total_bytes": int(ram.group(2)) * MIB if ram else None,
        "gpu_load_pct": float(gpu.group(1)) if gpu else None,
        "gpu_clock_mhz": float(gpu.group(2)) if gpu and gpu.group(2) else None,
        "rails_mw": rails,
        "board_power_mw": board_power_mw(rails),
        "temps_c": temps,
    }


def board_power_mw(rails_mw: dict[str, float]) -> Optional[float]:
    """The board's input power: VDD_IN or POM_5V_IN where the board has one, else the sum of its rails.

    NB: the sum of rails leaves out conversion losses and unmonitored parts, so it reads low (by 10-20 % on
    AGX Orin against a wall meter, as jetson-stats notes).
    """
    for name in BOARD_RAILS:
        if name in rails_mw:
            return rails_mw[name]
    return sum(rails_mw.values()) if rails_mw else None


def parse_l4t_release(text: str) -> tuple[str, Optional[int]]:
    """/etc/nv_tegra_release -> (L4T version like '35.4.1', JetPack major version or None).

    `# R35 (release), REVISION: 4.1, ...`: R32 = JetPack 4, R35 = 5, R36 = 6, R38 and later = 7.
    """
    match = re.search(r"R(\d+)\s*\(\w+\),\s*REVISION:\s*([\d.]+)", text)
    if not match:
        return "", None
    major = int(match.group(1))
    jetpack = {32: 4, 35: 5, 36: 6}.get(major, 7 if major >= 38 else None)
    return f"{major}.{match.group(2).rstrip('.')}", jetpack


def parse_device_tree_model(raw: str) -> str:
    """/proc/device-tree/model is NUL-terminated: 'NVIDIA Jetson Xavier NX Developer Kit\\x00'."""
    return raw.split("\x00", 1)[0].strip()


def parse_nvpmodel_status(text: str) -> Optional[int]:
    """/var/lib/nvpmodel/status (`pmode:0002 fmode:quiet`) -> the power mode ID."""
    match = re.search(r"pmode:\s*(\d+)", text)
    return int(match.group(1)) if match else None


def parse_nvpmodel_conf(text: str) -> dict[int, str]:
    """/etc/nvpmodel.conf -> {mode ID: name} from lines like `< POWER_MODEL ID=2 NAME=MODE_15W_6CORE >`."""
    return {int(i): name for i, name in re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>", text)}


def is_jetson(root: str = "/") -> bool:
    return os.path.exists(os.path.join(root, "etc/nv_tegra_release"))


def read_power_mode(root: str = "/") -> str:
    """The nvpmodel power mode as 'NAME (ID n)', 'ID n' without the config, or '' where it is not readable."""
    status = read_text(root, "/var/lib/nvpmodel/status")
    mode = parse_nvpmodel_status(status) if status else None
    if mode is None:
        return ""
    names = parse_nvpmodel_conf(read_text(root, "/etc/nvpmodel.conf") or "")
    return f"{names[mode]} (ID {mode})" if mode in names else f"ID {mode}"


def _not_connected(label: str) -> bool:
    return re.search(r"(?:^|[^A-Z0-9])NC(?:$|[^A-Z0-9])", label.upper()) is not None


def read_ina3221_rails_mw(root: str = "/") -> tuple[dict[str, float], str]:
    """Current power of each INA3221 rail in mW, and the layout found ('jetpack4' | 'jetpack5' | '').

    JetPack 4: ina3221x iio devices with `rail_name_K` and `in_powerK_input` (mW).
    JetPack 5+: ina3221 hwmon with `inK_label`, `inK_input` (mV) and `currK_input` (mA): mW = mV * mA / 1000.
    Channel 7 (the shunt-voltage sum) and channels labelled NC (not connected) are skipped.
    """
    rails: dict[str, float] = {}
    for name_path in glob_under(root, "/sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_*"):
        channel = name_path.rsplit("_", 1)[1]
        label = (read_text(root, name_path) or "").strip()
        power = read_number(root, f"{os.path.dirname(name_path)}/in_power{channel}_input")
        if label and not _not_connected(label) and power is not None:
            rails[label] = power
    if rails:
        return rails, "jetpack4"
    for label_path in glob_under(root, "/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in*_label"):
        channel = os.path.basename(label_path)[2:-len("_label")]
        label = (read_text(root, label_path) or "").strip()
        if channel == "7" or not label or _not_connected(label):
            continue
        folder = os.path.dirname(label_path)
        millivolts = read_number(root, f"{folder}/in{channel}_input")
        milliamps = read_number(root, f"{folder}/curr{channel}_input")
        if millivolts is not None and milliamps is not None:
            rails[label] = millivolts * milliamps / 1000.0
    return rails, ("jetpack5" if rails else "")


def read_gpu_load_pct(root: str = "/") -> Optional[float]:
    """GPU load from /sys/devices/gpu.0/load (0-1000, tenths of a percent)."""
    load = read_number(root, "/sys/devices/gpu.0/load")
    return load / 10.0 if load is not None else None


# devfreq names of Jetson GPUs: gm20b (Nano, TX1), gp10b (TX2), gv11b (Xavier), ga10b (Orin), gb10b (Thor).
_GPU_DEVFREQ = re.compile(r"(g[mpvab]\d+b|gpu)", re.IGNORECASE)


def read_gpu_clock_mhz(root: str = "/") -> Optional[float]:
    """The integrated GPU's current clock from devfreq `cur_freq` (Hz), in MHz; None where not found."""
    for folder in glob_under(root, "/sys/class/devfreq/*"):
        if _GPU_DEVFREQ.search(os.path.basename(folder)):
            hertz = read_number(root, folder + "/cur_freq")
            if hertz is not None:
                return hertz / 1e6
    return None


def jetson_identity(root: str = "/") -> Optional[dict[str, Any]]:
    """{'model', 'l4t', 'jetpack', 'power_mode'} for a Jetson, or None when this is not one."""
    release = read_text(root, "/etc/nv_tegra_release")
    if release is None:
        return None
    l4t, jetpack = parse_l4t_release(release)
    return {
        "model": parse_device_tree_model(read_text(root, "/proc/device-tree/model") or "") or "NVIDIA Jetson",
        "l4t": l4t,
        "jetpack": jetpack,
        "power_mode": read_power_mode(root),
    }
