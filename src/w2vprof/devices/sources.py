"""The one registry of telemetry sources: each entry probes this machine once and says what it reads, or why not.

    sources = MachineSources(Machine("cuda"))
    sources.listed()                 # every source, with what it reads or why not: `w2vprof devices`, `doctor`
    sources.choose("energy")         # Choice(source, reason, reader): what a profile reads energy from here

A probe (`Probe`) gives the source's row for `w2vprof devices` and, for each measure it answers here (energy,
temperature, clock, throttle), a `Choice`: its reader, or the reason there is none. A measure left out of
`answers` is one the source has nothing to say about on this machine (NVML on a Jetson), and the next source in
the chain is asked. Which sources serve a measure, and in which order, depends on the platform and the torch
device (`chains`): the table in w2vprof.devices.telemetry's docstring. Every source is probed at most once per
`MachineSources`, and only when listed or asked for, so the sampler touches exactly the sensors it will read.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Tuple

from w2vprof.devices import jetson, sensors
from w2vprof.devices._fs import under
from w2vprof.devices.detect import detect_platform
from w2vprof.devices.meters import NvmlEnergyCounter, RaplEnergy, SampledPower, TegrastatsPower, milli
from w2vprof.devices.nvml import Nvml, load_nvml

__all__ = [
    "MEASURES",
    "PMIC_MIN_INTERVAL_S",
    "Choice",
    "Probe",
    "Machine",
    "Chain",
    "TelemetrySource",
    "SOURCES",
    "chains",
    "MachineSources",
    "Source",
    "available_sources",
]

#: What a profile records, each from one chosen source (throttle: from every watcher that answers).
MEASURES = ("energy", "temperature", "clock", "throttle")

#: `vcgencmd pmic_read_adc` forks a process (a few ms of CPU on a Pi): once a second keeps it under 1 %.
PMIC_MIN_INTERVAL_S = 1.0

NO_TEMPERATURE = "no readable /sys/class/thermal zones or hwmon temperature sensors"
NO_CPUFREQ = "no cpufreq in /sys/devices/system/cpu (virtual machines usually hide it)"
NOT_A_PI = "not a Raspberry Pi"
NOT_A_JETSON = "not a Jetson"


@dataclass(frozen=True)
class Choice:
    """What one measure is read from, or why it is not (source '', reader None).

    reader: an EnergyMeter (energy); () -> degrees C or MHz or None (temperature, clock); () -> NVML clock-event
    bits or a vcgencmd ThrottleState or None (throttle).
    """

    source: str
    reason: str
    reader: Any = None


@dataclass(frozen=True)
class Probe:
    """One source probed on this machine: its row in `w2vprof devices` (name, available, what it reads now or why
    not) and its answer for each measure it decides here."""

    name: str
    available: bool
    details: str
    answers: dict[str, Choice] = field(default_factory=dict)


@dataclass
class Machine:
    """What the probes read: the filesystem under `root` (a fake tree in tests), the GPU through `nvml` (a fake in
    tests; None loads pynvml on first use), `vcgencmd` (argv -> stdout) on a Pi, and what prints tegrastats lines
    (None: /usr/bin/tegrastats where it exists). `interval_s` and `clock` go to the meters."""

    torch_device: str = "cpu"
    root: str = "/"
    nvml: Optional[Nvml] = None
    vcgencmd: Optional[sensors.CommandRunner] = None
    tegrastats_command: Optional[Sequence[str]] = None
    interval_s: float = 0.1
    clock: Callable[[], float] = time.monotonic
    platform: str = field(init=False)
    _gpu: Optional[tuple[Optional[Nvml], str]] = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.platform = detect_platform(self.root, self.torch_device)

    def gpu(self) -> tuple[Optional[Nvml], str]:
        """The GPU torch calls cuda:0 through NVML, or None and why (loaded once)."""
        if self._gpu is None:
            self._gpu = (self.nvml, "") if self.nvml is not None else load_nvml()
        return self._gpu


# -- the probes, one per source -------------------------------------------------------------------------------
def _rapl(machine: Machine) -> Probe:
    domains, why_not = sensors.rapl_domains(machine.root)
    if not domains:
        return Probe("rapl", False, why_not, {"energy": Choice("", why_not)})
    names = ", ".join(d.name for d in domains)
    answer = Choice("rapl", "CPU package counters: " + names, RaplEnergy(domains, clock=machine.clock))
    return Probe("rapl", True, "energy: CPU " + names, {"energy": answer})


def _nvml(machine: Machine) -> Probe:
    if machine.platform == "jetson":
        return Probe("nvml", False, "NVML does not work on Jetson (before JetPack 7; NotSupported for most calls on 7)")
    gpu, why_not = machine.gpu()
    if gpu is None:
        return Probe("nvml", False, why_not, {"energy": Choice("", why_not)})
    has_counter = gpu.energy_mj() is not None
    reads = "energy counter" if has_counter else "power sampling (no energy counter)"
    answers = {
        "energy": _nvml_energy(gpu, has_counter, machine.clock),
        "temperature": (
            Choice("nvml", "GPU core temperature", gpu.temperature_c)
            if gpu.temperature_c() is not None
            else Choice("", "NVML reports no GPU temperature")
        ),
        "clock": (
            Choice("nvml_sm", "GPU SM clock", gpu.sm_clock_mhz)
            if gpu.sm_clock_mhz() is not None
            else Choice("", "NVML reports no SM clock")
        ),
    }
    if gpu.throttle_bits() is not None:
        answers["throttle"] = Choice("nvml", "NVML clock-event reasons", gpu.throttle_bits)
    details = f"{gpu.name()}, driver {gpu.driver_version()}: {reads}, temperature, SM clock"
    return Probe("nvml", True, details, answers)


def _nvml_energy(gpu: Nvml, has_counter: bool, clock: Callable[[], float]) -> Choice:
    if has_counter:
        meter: Any = NvmlEnergyCounter(gpu, clock=clock)
        return Choice("nvml", f"{gpu.name()}: total-energy counter (the GPU board only, not the CPU)", meter)
    if gpu.power_mw() is not None:
        meter = SampledPower("nvml", lambda: milli(gpu.power_mw()), clock=clock)
        return Choice("nvml", f"{gpu.name()}: power integrated over time (no energy counter before Volta)", meter)
    return Choice("", f"{gpu.name()} reports neither energy nor power through NVML")


def _ina3221(machine: Machine) -> Probe:
    root = machine.root
    channels = jetson.ina3221_channels(root)
    rails = jetson.read_rails_mw(root, channels)
    if not rails:
        why_not = "no readable INA3221 rails in sysfs" if machine.platform == "jetson" else NOT_A_JETSON
        return Probe("ina3221", False, why_not)
    layout = jetson.ina3221_layout(root)
    listed = ", ".join(f"{name} {mw:.0f} mW" for name, mw in rails.items())
    board = next((name for name in jetson.BOARD_RAILS if name in rails), "the sum of " + ", ".join(rails))

    def board_watts() -> Optional[float]:
        return milli(jetson.board_power_mw(jetson.read_rails_mw(root, channels)))

    meter = SampledPower("ina3221", board_watts, clock=machine.clock)
    answer = Choice("ina3221", f"board power = {board} (INA3221 sysfs, {layout} layout), integrated", meter)
    return Probe("ina3221", True, f"board power ({layout} layout): {listed}", {"energy": answer})


def _tegrastats(machine: Machine) -> Probe:
    if machine.platform != "jetson":
        return Probe("tegrastats", False, NOT_A_JETSON)
    binary = os.path.exists(under(machine.root, "/usr/bin/tegrastats"))
    details = "Jetson: lines parsed by w2vprof.devices.jetson.parse_tegrastats; " + (
        "used for power when INA3221 is unreadable" if binary else "no /usr/bin/tegrastats here"
    )
    command = list(machine.tegrastats_command) if machine.tegrastats_command else None
    if command is None and binary:
        command = ["tegrastats", "--interval", str(max(int(machine.interval_s * 1000), 100))]
    if command is None:
        return Probe("tegrastats", True, details)
    reason = "board power from tegrastats lines (INA3221 sysfs unreadable; some releases print rails only to root)"
    answer = Choice("tegrastats", reason, TegrastatsPower(command, clock=machine.clock))
    return Probe("tegrastats", True, details, {"energy": answer})


def _pmic(machine: Machine) -> Probe:
    if machine.platform != "raspberrypi":
        return Probe("pmic", False, NOT_A_PI)

    def pmic_watts() -> Optional[float]:
        return sensors.parse_pmic_read_adc(sensors.run_vcgencmd("pmic_read_adc", runner=machine.vcgencmd) or "")

    watts = pmic_watts()
    if watts is None:
        why_not = "no power sensor: only the Pi 5 has one (`vcgencmd pmic_read_adc` gives no rails here)"
        listed = "no power sensor on this Pi (only the Pi 5 has one)"
        return Probe("pmic", False, listed, {"energy": Choice("", why_not)})
    interval = max(PMIC_MIN_INTERVAL_S, machine.interval_s)
    meter = SampledPower("pmic", pmic_watts, min_interval_s=interval, clock=machine.clock)
    reason = "sum of the PMIC rails (`vcgencmd pmic_read_adc`, once a second; USB devices not included)"
    return Probe("pmic", True, f"Pi 5 PMIC rails: {watts:.2f} W now", {"energy": Choice("pmic", reason, meter)})


def _vcgencmd(machine: Machine) -> Probe:
    if machine.platform != "raspberrypi":
        return Probe("vcgencmd", False, NOT_A_PI)

    def throttle_state() -> Optional[sensors.ThrottleState]:
        return sensors.parse_throttled(sensors.run_vcgencmd("get_throttled", runner=machine.vcgencmd) or "")

    state = throttle_state()
    if state is None:
        return Probe("vcgencmd", False, "vcgencmd get_throttled failed")
    answer = Choice("vcgencmd", "vcgencmd get_throttled bits", throttle_state)
    return Probe("vcgencmd", True, f"throttle bits {state.value:#x}", {"throttle": answer})


def _temperature(machine: Machine) -> Probe:
    root = machine.root
    files, source = sensors.temperature_files(root)
    temps = sensors.read_temperature_files(root, files)
    if not temps:
        return Probe("thermal_zone", False, NO_TEMPERATURE, {"temperature": Choice("", NO_TEMPERATURE)})
    files = {name: files[name] for name in temps}  # found once: a poll reads these files, never globs

    def hottest() -> Optional[float]:
        readings = sensors.read_temperature_files(root, files)
        return max(readings.values()) if readings else None

    details = f"hottest {max(temps.values()):.1f} C of {len(temps)} sensor(s)"
    answer = Choice(source, "hottest of " + ", ".join(temps), hottest)
    return Probe("hwmon" if source == "hwmon" else "thermal_zone", True, details, {"temperature": answer})


def _cpufreq(machine: Machine) -> Probe:
    clock = sensors.cpu_freq_mhz(machine.root)
    if clock is None:
        return Probe("cpufreq", False, NO_CPUFREQ, {"clock": Choice("", NO_CPUFREQ)})
    answer = Choice("cpufreq", "mean current clock of all CPUs", lambda: sensors.cpu_freq_mhz(machine.root))
    return Probe("cpufreq", True, f"mean CPU clock {clock:.0f} MHz", {"clock": answer})


def _devfreq(machine: Machine) -> Probe:
    gpu_clock = jetson.read_gpu_clock_mhz(machine.root)
    if gpu_clock is None:
        return Probe("devfreq", False, "no GPU devfreq node found")
    answers = {"clock": Choice("devfreq", "integrated GPU clock", lambda: jetson.read_gpu_clock_mhz(machine.root))}
    return Probe("devfreq", True, f"GPU clock {gpu_clock:.0f} MHz", answers if gpu_clock else {})


def _mps(machine: Machine) -> Probe:
    return Probe("mps", True, "memory sampled with torch.mps.driver_allocated_memory after each step")


# -- the registry ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TelemetrySource:
    """One entry: the key chains name it by, its probe, and whether `w2vprof devices` lists it on a machine."""

    key: str
    probe: Callable[[Machine], Probe]
    listed: Callable[[Machine], bool] = lambda machine: True


#: Every telemetry source w2vprof knows, in the order `w2vprof devices` lists them.
SOURCES: tuple[TelemetrySource, ...] = (
    TelemetrySource("rapl", _rapl),
    TelemetrySource("nvml", _nvml),
    TelemetrySource("ina3221", _ina3221),
    TelemetrySource("tegrastats", _tegrastats),
    TelemetrySource("pmic", _pmic),
    TelemetrySource("vcgencmd", _vcgencmd),
    TelemetrySource("temperature", _temperature),
    TelemetrySource("cpufreq", _cpufreq),
    TelemetrySource("devfreq", _devfreq, listed=lambda machine: machine.platform == "jetson"),
    TelemetrySource("mps", _mps, listed=lambda machine: machine.torch_device == "mps"),
)


@dataclass(frozen=True)
class Chain:
    """The sources asked for one measure, in order (the first that answers decides), and why nothing is read
    when none of them answers."""

    sources: tuple[str, ...]
    otherwise: str = ""


def chains(platform: str, torch_device: str) -> dict[str, Chain]:
    """Which sources serve each measure on this platform and torch device (throttle: every one that answers)."""
    gpu = ("nvml",) if torch_device == "cuda" else ()  # the GPU's own sensors first, where it is the device
    energy = {
        "apple": Chain((), "macOS reports power only through `powermetrics`, which needs sudo"),
        "jetson": Chain(("ina3221", "tegrastats"), "no readable INA3221 rails in sysfs and no tegrastats binary"),
        "raspberrypi": Chain(("pmic",)),
    }.get(platform, Chain(gpu or ("rapl",)))
    if platform == "apple":
        temperature = Chain(gpu, "macOS gives temperatures only to privileged tools")
    else:
        temperature = Chain(gpu + ("temperature",))
    integrated_gpu = ("devfreq",) if platform == "jetson" and gpu else ()
    return {
        "energy": energy,
        "temperature": temperature,
        "clock": Chain(gpu + integrated_gpu + ("cpufreq",)),
        "throttle": Chain(gpu + ("vcgencmd",)),
    }


class MachineSources:
    """The registry's sources on one machine, each probed at most once, when first listed or asked for."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self._entries = {entry.key: entry for entry in SOURCES}
        self._probes: dict[str, Probe] = {}
        self._chains = chains(machine.platform, machine.torch_device)

    def probe(self, key: str) -> Probe:
        if key not in self._probes:
            self._probes[key] = self._entries[key].probe(self.machine)
        return self._probes[key]

    def listed(self) -> list[Probe]:
        """Every source listed on this machine, in registry order."""
        return [self.probe(entry.key) for entry in SOURCES if entry.listed(self.machine)]

    def choose(self, measure: str) -> Choice:
        """The first answer of the measure's chain, else Choice('', why nothing is read)."""
        chain = self._chains[measure]
        for key in chain.sources:
            answer = self.probe(key).answers.get(measure)
            if answer is not None:
                return answer
        return Choice("", chain.otherwise)

    def watchers(self, measure: str) -> list[Choice]:
        """Every answer with a reader in the measure's chain (throttle is watched through all of them)."""
        answers = (self.probe(key).answers.get(measure) for key in self._chains[measure].sources)
        return [answer for answer in answers if answer is not None and answer.reader is not None]


#: (source, available, what it reads or why not): one row of the telemetry sources `w2vprof devices` lists.
Source = Tuple[str, bool, str]


def available_sources(
    torch_device: str, root: str = "/", nvml: Optional[Nvml] = None, vcgencmd: Optional[sensors.CommandRunner] = None
) -> list[Source]:
    """(source, available, what it reads or why not) for every telemetry source w2vprof knows, on this machine."""
    machine = Machine(torch_device, root, nvml, vcgencmd)
    return [(probe.name, probe.available, probe.details) for probe in MachineSources(machine).listed()]
