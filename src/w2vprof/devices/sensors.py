"""Raspberry Pi (vcgencmd, throttle bits, PMIC), RAPL powercap, thermal zones and cpufreq.

Pure functions of strings or of a filesystem root; commands go through an injectable runner.
"""
from __future__ import annotations

import glob
import os
import re
import subprocess
from dataclasses import dataclass
from typing import Callable, Optional

__all__ = [
    "ThrottleState",
    "parse_throttled",
    "parse_measure_temp",
    "parse_pmic_read_adc",
    "run_vcgencmd",
    "RaplDomain",
    "rapl_domains",
    "RaplCounter",
    "max_thermal_c",
    "cpu_freq_mhz",
    "raspberry_pi_model",
]

_THROTTLE_BITS = {
    0: "under-voltage",
    1: "ARM frequency capped",
    2: "throttled",
    3: "soft temperature limit",
}


@dataclass(frozen=True)
class ThrottleState:
    value: int
    now: list[str]  # conditions active now (bits 0-3)
    since_boot: list[str]  # conditions that occurred since boot (bits 16-19)

    @property
    def throttling_now(self) -> bool:
        return bool(self.now)


def parse_throttled(text: str) -> Optional[ThrottleState]:
    """'throttled=0x50005' -> now: under-voltage, throttled; since boot: under-voltage, throttled."""
    match = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", text)
    if not match:
        return None
    value = int(match.group(1), 0)
    now = [name for bit, name in _THROTTLE_BITS.items() if value & (1 << bit)]
    since = [name for bit, name in _THROTTLE_BITS.items() if value & (1 << (bit + 16))]
    return ThrottleState(value, now, since)


def parse_measure_temp(text: str) -> Optional[float]:
    """"temp=39.5'C" -> 39.5."""
    match = re.search(r"temp=(-?\d+(?:\.\d+)?)", text)
    return float(match.group(1)) if match else None


def parse_pmic_read_adc(text: str) -> Optional[float]:
    """Pi 5 `vcgencmd pmic_read_adc`: sum over rails of current x voltage, paired by rail name (watts)."""
    currents: dict[str, float] = {}
    volts: dict[str, float] = {}
    for name, kind, value in re.findall(r"^\s*(\S+?)_([AV]) \w+\(\d+\)=(-?[\d.]+)[AV]", text, re.MULTILINE):
        (currents if kind == "A" else volts)[name] = float(value)
    paired = [currents[name] * volts[name] for name in currents if name in volts]
    return sum(paired) if paired else None


def run_vcgencmd(*args: str, runner: Optional[Callable[[list[str]], str]] = None) -> Optional[str]:
    """Output of `vcgencmd ARGS`, or None where the command is missing or fails."""
    command = ["vcgencmd", *args]
    if runner is not None:
        return runner(command)
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


# -- RAPL -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RaplDomain:
    name: str
    energy_path: str
    max_energy_uj: int


def rapl_domains(root: str = "/") -> tuple[list[RaplDomain], str]:
    """Top-level RAPL domains (package-N, psys) readable by this process, and why none are when none are."""
    paths = sorted(glob.glob(os.path.join(root, "sys/class/powercap/intel-rapl:[0-9]*")))
    paths = [p for p in paths if p.count(":") == 1]  # intel-rapl:0, not the subdomains intel-rapl:0:0
    if not paths:
        return [], "no RAPL in /sys/class/powercap (a virtual machine, a non-x86 CPU, or the intel_rapl driver not loaded)"
    domains = []
    unreadable = False
    for path in paths:
        energy = os.path.join(path, "energy_uj")
        try:
            with open(energy) as handle:
                int(handle.read())
            with open(os.path.join(path, "max_energy_range_uj")) as handle:
                max_range = int(handle.read())
            with open(os.path.join(path, "name")) as handle:
                name = handle.read().strip()
        except PermissionError:
            unreadable = True
            continue
        except (OSError, ValueError):
            continue
        domains.append(RaplDomain(name, energy, max_range))
    if domains:
        return domains, ""
    if unreadable:
        return [], "RAPL energy_uj is root-only since Linux 5.10: run as root or grant read access to energy_uj"
    return [], "RAPL domains present but unreadable"


class RaplCounter:
    """Energy of the package domains between start and now, with wraparound (add max_energy_range_uj)."""

    def __init__(self, domains: list[RaplDomain]) -> None:
        # psys covers the whole SoC on laptops; otherwise sum the packages.
        psys = [d for d in domains if d.name == "psys"]
        self.domains = psys or [d for d in domains if d.name.startswith("package")] or domains
        self._last = [self._read(d) for d in self.domains]
        self.energy_uj = 0

    @staticmethod
    def _read(domain: RaplDomain) -> int:
        with open(domain.energy_path) as handle:
            return int(handle.read())

    def poll(self) -> None:
        """Call more often than the counter wraps (minutes at full load)."""
        for index, domain in enumerate(self.domains):
            value = self._read(domain)
            delta = value - self._last[index]
            if delta < 0:
                delta += domain.max_energy_uj
            self.energy_uj += delta
            self._last[index] = value


# -- thermal, clocks, identity --------------------------------------------------------------------------
def max_thermal_c(root: str = "/") -> Optional[float]:
    """Hottest thermal zone (millidegrees in sysfs)."""
    hottest = None
    for path in glob.glob(os.path.join(root, "sys/class/thermal/thermal_zone*/temp")):
        try:
            with open(path) as handle:
                value = int(handle.read()) / 1000.0
        except (OSError, ValueError):
            continue
        if value > -200 and (hottest is None or value > hottest):
            hottest = value
    return hottest


def cpu_freq_mhz(root: str = "/") -> Optional[float]:
    """Mean current clock of all CPUs (cpufreq, kHz in sysfs)."""
    values = []
    for path in glob.glob(os.path.join(root, "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq")):
        try:
            with open(path) as handle:
                values.append(int(handle.read()) / 1000.0)
        except (OSError, ValueError):
            continue
    return sum(values) / len(values) if values else None


def raspberry_pi_model(root: str = "/") -> Optional[str]:
    try:
        with open(os.path.join(root, "proc/device-tree/model"), encoding="utf-8", errors="replace") as handle:
            model = handle.read().strip("\x00").strip()
    except OSError:
        return None
    return model if model.startswith("Raspberry Pi") else None
