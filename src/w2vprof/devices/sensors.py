"""Sensors outside NVML and Jetson: Raspberry Pi (`vcgencmd`: temperature, throttle bits, Pi 5 PMIC power),
RAPL energy counters (wraparound included), thermal zones / hwmon and cpufreq clocks.

Pure functions of a string or of a filesystem root; `vcgencmd` goes through an injectable runner
(argv -> stdout text), so tests need no binary.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from w2vprof.devices._fs import glob_under, read_number, read_text, under
from w2vprof.devices.devicetree import read_device_tree_model

__all__ = [
    "CommandRunner",
    "run_command",
    "run_vcgencmd",
    "raspberry_pi_model",
    "THROTTLE_BITS",
    "ThrottleState",
    "parse_throttled",
    "throttled_during",
    "parse_measure_temp",
    "parse_pmic_rails",
    "parse_pmic_read_adc",
    "RaplDomain",
    "rapl_domains",
    "energy_delta_uj",
    "RaplCounter",
    "OFFLINE_BELOW_C",
    "NOT_TEMPERATURE_ZONES",
    "temperature_files",
    "read_temperature_files",
    "read_temperatures_c",
    "cpu_freq_mhz",
]

#: argv -> stdout; raises OSError / subprocess.SubprocessError when the command cannot run.
CommandRunner = Callable[[Sequence[str]], str]


def run_command(argv: Sequence[str]) -> str:
    """The real runner: stdout of argv, with a short timeout (a hung vcgencmd must not hang a profile)."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=5, check=True).stdout


def run_vcgencmd(*args: str, runner: Optional[CommandRunner] = None) -> Optional[str]:
    """Output of `vcgencmd ARGS`, or None where the command is missing, fails or is unknown to the firmware."""
    try:
        return (runner or run_command)(["vcgencmd", *args])
    except Exception:  # noqa: BLE001 - OSError (no binary), CalledProcessError, TimeoutExpired, whatever a runner raises
        return None


# -- Raspberry Pi -----------------------------------------------------------------------------------------------


def raspberry_pi_model(root: str = "/") -> Optional[str]:
    """'Raspberry Pi 4 Model B Rev 1.4' (the device tree's model), or None when this is not a Pi."""
    model = read_device_tree_model(root)
    return model if model.startswith("Raspberry Pi") else None


#: `vcgencmd get_throttled` bits 0-3 are "now"; bits 16-19 are the same conditions "occurred since boot".
THROTTLE_BITS = {0: "under-voltage", 1: "ARM frequency capped", 2: "throttled", 3: "soft temperature limit"}


@dataclass(frozen=True)
class ThrottleState:
    value: int
    now: list[str]  # conditions active now (bits 0-3)
    since_boot: list[str]  # conditions that occurred since boot (bits 16-19)


def parse_throttled(text: str) -> Optional[ThrottleState]:
    """`throttled=0x50005` -> now: under-voltage, throttled; since boot: the same (bits 0, 2, 16, 18)."""
    match = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", text)
    if not match:
        return None
    value = int(match.group(1), 0)
    now = [name for bit, name in THROTTLE_BITS.items() if value >> bit & 1]
    since_boot = [name for bit, name in THROTTLE_BITS.items() if value >> (bit + 16) & 1]
    return ThrottleState(value, now, since_boot)


def throttled_during(before: ThrottleState, after: ThrottleState) -> list[str]:
    """Why the Pi was throttled while a configuration ran between two readings ([] when it was not).

    A condition counts when it is set "now" at either reading, or its sticky since-boot bit was set during the
    run (clear before, set after). A sticky bit already set before the run says nothing about this run.
    """
    new = [name for name in after.since_boot if name not in before.since_boot]
    return list(dict.fromkeys(before.now + after.now + [f"{name} (occurred during the run)" for name in new]))


def parse_measure_temp(text: str) -> Optional[float]:
    """`temp=39.5'C` -> 39.5."""
    match = re.search(r"temp=(-?\d+(?:\.\d+)?)", text)
    return float(match.group(1)) if match else None


def parse_pmic_rails(text: str) -> dict[str, float]:
    """Pi 5 `vcgencmd pmic_read_adc` -> {rail: watts}, pairing `RAIL_A current(N)=...A` with `RAIL_V volt(M)=...V`.

    Rails with a voltage but no current (EXT5V_V, BATT_V) have no power and are left out.
    """
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for name, kind, value in re.findall(r"(\S+)_([AV])\s+(?:current|volt)\(\d+\)=(-?[\d.]+)[AV]", text):
        (amps if kind == "A" else volts)[name] = float(value)
    return {name: volts[name] * amps[name] for name in amps if name in volts}


def parse_pmic_read_adc(text: str) -> Optional[float]:
    """Total power of the PMIC rails in watts; None when the output has no paired rails (not a Pi 5).

    NB: the PMIC sees the SoC, memory and 3V3/1V8 rails, not USB devices, the fan or the supply's losses: it
    reads below a wall meter (by about 1-2 W on an idle Pi 5, as the Pi community reports).
    """
    rails = parse_pmic_rails(text)
    return sum(rails.values()) if rails else None


# -- RAPL -------------------------------------------------------------------------------------------------------

POWERCAP = "/sys/class/powercap"


@dataclass(frozen=True)
class RaplDomain:
    name: str  # package-0
    energy_path: str  # the energy_uj file on disk (under the root it was found in)
    max_energy_range_uj: int


def rapl_domains(root: str = "/") -> tuple[list[RaplDomain], str]:
    """The CPU package domains whose counters this process can read and '', or ([], why not).

    Only top-level `package-N` domains are summed: core/uncore/dram are sub-domains (`intel-rapl:0:0`) inside a
    package or outside the CPU, and psys overlaps the packages.
    """
    folders = [p for p in glob_under(root, POWERCAP + "/intel-rapl:*") if p.count(":") == 1]
    if not folders:
        return [], (f"no RAPL in {POWERCAP} (a virtual machine, a non-x86 CPU, or the intel_rapl driver not loaded)")
    domains = []
    for folder in folders:
        name = (read_text(root, folder + "/name") or "").strip()
        max_range = read_number(root, folder + "/max_energy_range_uj")
        if name.startswith("package") and max_range is not None:
            domains.append(RaplDomain(name, under(root, folder + "/energy_uj"), int(max_range)))
    if not domains:
        return [], f"RAPL in {POWERCAP} has no package domain"
    try:
        for domain in domains:
            RaplCounter.read(domain)
    except PermissionError:
        return [], (
            "RAPL energy_uj is readable by root only (Linux 5.10+, against a power side channel): run as root, "
            "or have an administrator grant read access to /sys/class/powercap/intel-rapl:*/energy_uj"
        )
    except (OSError, ValueError) as exc:
        return [], f"RAPL energy_uj cannot be read ({exc})"
    return domains, ""


def energy_delta_uj(before: int, after: int, max_energy_range_uj: int) -> int:
    """Energy between two readings of a counter that wraps to 0 after max_energy_range_uj.

    A reading lower than the previous one means one wrap: add the range. (Two wraps between readings cannot be
    seen: poll more often than range / power, 43 min at 100 W for the example range 262143328850 uJ.)
    """
    return after - before if after >= before else after + max_energy_range_uj - before


class RaplCounter:
    """Package energy since construction (or the last start()), summed over domains across wraps.

    Poll at least once per wrap period; `energy_uj` is None once a counter could not be read (no partial sums).
    """

    def __init__(self, domains: list[RaplDomain]) -> None:
        self._domains = domains
        self.start()

    @staticmethod
    def read(domain: RaplDomain) -> int:
        with open(domain.energy_path, encoding="ascii") as handle:
            return int(handle.read().strip())

    def start(self) -> None:
        self._total_uj: Optional[int] = 0
        try:
            self._last = [self.read(d) for d in self._domains]
        except (OSError, ValueError):
            self._total_uj = None

    def poll(self) -> None:
        if self._total_uj is None:
            return
        try:
            current = [self.read(d) for d in self._domains]
        except (OSError, ValueError):
            self._total_uj = None
            return
        for domain, before, after in zip(self._domains, self._last, current):
            self._total_uj += energy_delta_uj(before, after, domain.max_energy_range_uj)
        self._last = current

    @property
    def energy_uj(self) -> Optional[int]:
        return self._total_uj


# -- thermal zones, hwmon, cpufreq ------------------------------------------------------------------------------

#: Readings below this are "sensor offline" markers (tegrastats prints -256C; sysfs zones -40000 or less),
#: not temperatures a running board can have.
OFFLINE_BELOW_C = -40.0


#: Thermal zones whose reading is not a temperature of the chip. Jetson Nano, TX1 and Xavier NX have a `PMIC-Die`
#: zone that always reads 100 C (a trip placeholder, not a sensor): counting it would make every run "100 C".
NOT_TEMPERATURE_ZONES = frozenset({"PMIC-Die"})


def temperature_files(root: str = "/") -> tuple[dict[str, str], str]:
    """{sensor name: its millidegree file} and the source: thermal zones where there are any, else hwmon.

    Every thermal zone counts (named by its `type`) except NOT_TEMPERATURE_ZONES; offline readings are dropped
    when read (read_temperature_files).
    """
    zones = {
        (read_text(root, os.path.dirname(p) + "/type") or os.path.basename(os.path.dirname(p))).strip(): p
        for p in glob_under(root, "/sys/class/thermal/thermal_zone*/temp")
    }
    zones = {name: path for name, path in zones.items() if name not in NOT_TEMPERATURE_ZONES}
    if zones:
        return zones, "thermal_zone"
    sensors = {
        (read_text(root, os.path.dirname(p) + "/name") or "hwmon").strip() + "/" + os.path.basename(p)[:-6]: p
        for p in glob_under(root, "/sys/class/hwmon/hwmon*/temp*_input")
    }
    return sensors, ("hwmon" if sensors else "")


def read_temperature_files(root: str, files: dict[str, str]) -> dict[str, float]:
    """Degrees C of each sensor file (millidegrees in sysfs); unreadable and offline sensors dropped."""
    readings = {}
    for name, path in files.items():
        value = read_number(root, path)
        if value is not None and value / 1000.0 > OFFLINE_BELOW_C:
            readings[name] = value / 1000.0
    return readings


def read_temperatures_c(root: str = "/") -> tuple[dict[str, float], str]:
    """Readable temperatures in degrees C (sensor -> value) and their source (thermal_zone | hwmon | '')."""
    files, source = temperature_files(root)
    readings = read_temperature_files(root, files)
    return readings, (source if readings else "")


def cpu_freq_mhz(root: str = "/") -> Optional[float]:
    """Mean current clock over all CPUs from cpufreq `scaling_cur_freq` (kHz), in MHz; None without cpufreq."""
    clocks = [
        value
        for path in glob_under(root, "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq")
        if (value := read_number(root, path)) is not None
    ]
    return sum(clocks) / len(clocks) / 1000.0 if clocks else None
