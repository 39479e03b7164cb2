"""NVIDIA Jetson: tegrastats lines of every JetPack format, INA3221 power rails, identity and power mode.

Every reader takes a string or a filesystem root.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Optional

from w2vprof.devices._fs import glob_under, read_number, read_text
from w2vprof.devices.devicetree import read_device_tree_model
from w2vprof.devices.sensors import OFFLINE_BELOW_C

__all__ = [
    "MIB",
    "BOARD_RAILS",
    "parse_tegrastats",
    "board_power_mw",
    "parse_nv_tegra_release",
    "jetpack_for_l4t",
    "parse_nvpmodel_status",
    "parse_nvpmodel_conf",
    "is_jetson",
    "read_power_mode",
    "Ina3221Channel",
    "ina3221_channels",
    "read_rails_mw",
    "read_ina3221_mw",
    "ina3221_layout",
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

    Returns ram_used_bytes, ram_total_bytes (None when absent), gpu_load_pct and gpu_freq_mhz (None when absent),
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
        "gpu_freq_mhz": float(gpu.group(2)) if gpu and gpu.group(2) else None,
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


def parse_nv_tegra_release(text: str) -> str:
    """/etc/nv_tegra_release (`# R35 (release), REVISION: 4.1, ...`) -> the L4T version '35.4.1' ('' if unknown)."""
    match = re.search(r"R(\d+)\s*\(\w+\),\s*REVISION:\s*(\d+(?:\.\d+)*)", text)
    return f"{match.group(1)}.{match.group(2)}" if match else ""


def jetpack_for_l4t(l4t: str) -> str:
    """The JetPack major version of an L4T release: R32 = 4, R35 = 5, R36 = 6, R38 and later = 7 ('' if unknown)."""
    major = l4t.split(".")[0]
    number = int(major) if major.isdigit() else 0
    return {32: "4", 35: "5", 36: "6"}.get(number, "7" if number >= 38 else "")


def parse_nvpmodel_status(text: str) -> str:
    """/var/lib/nvpmodel/status (`pmode:0002 fmode:quiet`) -> the power mode ID as written ('0002'), or ''."""
    match = re.search(r"pmode:\s*(\d+)", text)
    return match.group(1) if match else ""


def parse_nvpmodel_conf(text: str) -> dict[int, str]:
    """/etc/nvpmodel.conf -> {mode ID: name} from lines like `< POWER_MODEL ID=2 NAME=MODE_15W_6CORE >`."""
    return {int(i): name for i, name in re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>", text)}


def is_jetson(root: str = "/") -> bool:
    return os.path.exists(os.path.join(root, "etc/nv_tegra_release"))


def read_power_mode(root: str = "/") -> str:
    """nvpmodel's mode: 'MODE_15W_6CORE (0002)' given /etc/nvpmodel.conf, else the ID '0002'; '' if unreadable."""
    mode = parse_nvpmodel_status(read_text(root, "/var/lib/nvpmodel/status") or "")
    if not mode:
        return ""
    names = parse_nvpmodel_conf(read_text(root, "/etc/nvpmodel.conf") or "")
    return f"{names[int(mode)]} ({mode})" if int(mode) in names else mode


def _not_connected(label: str) -> bool:
    return re.search(r"(?:^|[^A-Z0-9])NC(?:$|[^A-Z0-9])", label.upper()) is not None


@dataclass(frozen=True)
class Ina3221Channel:
    """One connected rail: its label and the files that give its power (device paths, read under a root)."""

    label: str
    power_mw_path: str = ""  # JetPack 4: power directly, mW
    millivolts_path: str = ""  # JetPack 5+: mV x mA / 1000
    milliamps_path: str = ""

    def read_mw(self, root: str) -> Optional[float]:
        if self.power_mw_path:
            return read_number(root, self.power_mw_path)
        millivolts = read_number(root, self.millivolts_path)
        milliamps = read_number(root, self.milliamps_path)
        return None if millivolts is None or milliamps is None else millivolts * milliamps / 1000.0


def ina3221_channels(root: str = "/") -> list[Ina3221Channel]:
    """The connected INA3221 rails, found once (the sampler then reads only their files, never globs again).

    JetPack 4: ina3221x iio devices with `rail_name_K` and `in_powerK_input` (mW).
    JetPack 5+: ina3221 hwmon with `inK_label`, `inK_input` (mV) and `currK_input` (mA): mW = mV * mA / 1000.
    Channel 7 (the shunt-voltage sum) and channels labelled NC (not connected) are skipped.
    """
    channels = []
    for name_path in glob_under(root, "/sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_*"):
        label = (read_text(root, name_path) or "").strip()
        if label and not _not_connected(label):
            folder, channel = os.path.dirname(name_path), name_path.rsplit("_", 1)[1]
            channels.append(Ina3221Channel(label, power_mw_path=f"{folder}/in_power{channel}_input"))
    if channels:
        return channels
    for label_path in glob_under(root, "/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in*_label"):
        channel = os.path.basename(label_path)[2 : -len("_label")]
        label = (read_text(root, label_path) or "").strip()
        if channel != "7" and label and not _not_connected(label):
            folder = os.path.dirname(label_path)
            channels.append(
                Ina3221Channel(
                    label, millivolts_path=f"{folder}/in{channel}_input", milliamps_path=f"{folder}/curr{channel}_input"
                )
            )
    return channels


def read_rails_mw(root: str, channels: list[Ina3221Channel]) -> dict[str, float]:
    """{rail label: mW} of the channels that could be read now."""
    return {c.label: mw for c in channels if (mw := c.read_mw(root)) is not None}


def read_ina3221_mw(root: str = "/") -> dict[str, float]:
    """Current power of each INA3221 rail in mW ({} where there is no readable INA3221)."""
    return read_rails_mw(root, ina3221_channels(root))


def ina3221_layout(root: str = "/") -> str:
    """Which INA3221 sysfs layout this board has: 'JetPack 4 iio', 'JetPack 5+ hwmon', or ''."""
    if glob_under(root, "/sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_*"):
        return "JetPack 4 iio"
    if glob_under(root, "/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in*_label"):
        return "JetPack 5+ hwmon"
    return ""


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


def jetson_identity(root: str = "/") -> Optional[dict[str, str]]:
    """{'model', 'l4t', 'jetpack', 'power_mode'} for a Jetson ('' for what is unreadable), or None for other devices."""
    release = read_text(root, "/etc/nv_tegra_release")
    if release is None:
        return None
    l4t = parse_nv_tegra_release(release)
    return {
        "model": read_device_tree_model(root) or "NVIDIA Jetson",
        "l4t": l4t,
        "jetpack": jetpack_for_l4t(l4t),
        "power_mode": read_power_mode(root),
    }
