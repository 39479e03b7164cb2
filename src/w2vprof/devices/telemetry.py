"""Telemetry over the timed steps of one configuration: energy, power, temperature, clocks and throttling.

    sampler = TelemetrySampler(torch_device="cpu", root="/")
    sampler.start()                      # right before the timed steps
    ...                                  # timed steps
    fields = sampler.stop(steps=5)       # the ResultRecord telemetry fields

What is read depends on the device:

    device              energy                          temperature        clock              throttle
    x86 / Linux CPU     rapl (package counters)         thermal_zone|hwmon cpufreq            clock fell
    NVIDIA GPU (cuda)   nvml (energy counter, else      nvml               nvml_sm            nvml clock-event
                        integrated power)                                                     reasons, clock fell
    Jetson              ina3221 (board rail, polled),   thermal_zone       devfreq (GPU) for  clock fell
                        else tegrastats                                    cuda, else cpufreq
    Raspberry Pi        pmic (Pi 5, polled each 1 s)    thermal_zone       cpufreq            vcgencmd bits,
                                                                                              clock fell
    Apple (mps)         none: powermetrics needs sudo   none               none               none

A value that cannot be read stays None with an empty source: never a guess. A background thread runs only where
something must be polled (integrated power, temperature maximum, NVML throttle reasons); each poll reads a few
small sysfs files or one NVML call, so it costs microseconds per interval.

One window for energy and power: each energy meter reports the joules of its own window and that window's length
(`EnergyWindow`), its first reading in start() and its last in stop(), before the sampler stops its thread. So
energy_j_per_batch x steps / window = avg_power_w exactly, and nothing the sampler does after the steps (joining
its thread, stopping tegrastats) stretches the window.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence

from w2vprof.devices import jetson, sensors
from w2vprof.devices._fs import under
from w2vprof.devices.detect import detect_platform
from w2vprof.devices.nvml import Nvml, decode_throttle_bits, load_nvml

__all__ = [
    "TELEMETRY_FIELDS",
    "CLOCK_DROP_FRACTION",
    "PMIC_MIN_INTERVAL_S",
    "EnergyMeter",
    "EnergyWindow",
    "SampledPower",
    "trapezoid_j",
    "NvmlEnergyCounter",
    "RaplEnergy",
    "TegrastatsPower",
    "TelemetrySampler",
    "empty_fields",
]

#: The ResultRecord fields stop() fills, in record order.
TELEMETRY_FIELDS = (
    "energy_j_per_batch",
    "avg_power_w",
    "energy_source",
    "max_temp_c",
    "temp_source",
    "clock_mhz_before",
    "clock_mhz_after",
    "clock_source",
    "throttled",
    "throttle_reason",
)

#: A clock that ends more than this fraction below where it started counts as throttled. Governors move clocks
#: by a few percent under a steady load; a 10 % fall is a cap (thermal, power, under-voltage).
CLOCK_DROP_FRACTION = 0.10

#: `vcgencmd pmic_read_adc` forks a process (a few ms of CPU on a Pi): once a second keeps it under 1 %.
PMIC_MIN_INTERVAL_S = 1.0


def empty_fields() -> dict[str, object]:
    """Every telemetry field unavailable: None for numbers, '' for sources and reasons."""
    return {name: ("" if name.endswith(("_source", "_reason")) else None) for name in TELEMETRY_FIELDS}


@dataclass(frozen=True)
class EnergyWindow:
    """Energy over one window and the window's length, both from the meter's own first and last readings."""

    joules: float
    seconds: float

    @property
    def watts(self) -> float:
        return self.joules / self.seconds


class EnergyMeter(Protocol):
    source: str
    needs_polling: bool

    def start(self) -> None: ...
    def poll(self) -> None: ...
    def stop(self) -> Optional[EnergyWindow]: ...  # None when it could not be measured or the window is empty


def _window(joules: Optional[float], seconds: float) -> Optional[EnergyWindow]:
    """The window, or None when there is no energy or no time to divide it by."""
    return EnergyWindow(joules, seconds) if joules is not None and seconds > 0 else None


class SampledPower:
    """Energy from a power reading (watts) sampled at start, on every poll and at stop: trapezoids between samples.

    NB: power changes faster than the sampling interval are averaged out; over many steps the error is small,
    over a window of only a few intervals it can be large (the samples are few).
    """

    needs_polling = True

    def __init__(
        self,
        source: str,
        read_watts: Callable[[], Optional[float]],
        min_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self._read_watts = read_watts
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._samples: list[tuple[float, float]] = []

    def _sample(self, force: bool = False) -> None:
        now = self._clock()
        if not force and self._samples and now - self._samples[-1][0] < self._min_interval_s:
            return
        watts = self._read_watts()
        if watts is not None:
            self._samples.append((now, float(watts)))

    def start(self) -> None:
        self._samples = []
        self._sample(force=True)

    def poll(self) -> None:
        self._sample()

    def stop(self) -> Optional[EnergyWindow]:
        """Joules between the first and last sample over that span; None with fewer than two samples."""
        self._sample(force=True)
        if len(self._samples) < 2:
            return None
        return _window(trapezoid_j(self._samples), self._samples[-1][0] - self._samples[0][0])


def trapezoid_j(samples: Sequence[tuple[float, float]]) -> float:
    """Energy of (time s, watts) samples joined by straight lines: 10 W at t=1 and t=2 -> 10 J."""
    return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in zip(samples, samples[1:]))


class NvmlEnergyCounter:
    """NVML's total-energy counter (mJ since driver load): read at start and stop, no polling needed.

    NB: the counter updates every 20-100 ms, so a window of a few short steps can be off by one update.
    """

    source = "nvml"
    needs_polling = False

    def __init__(self, gpu: Nvml, clock: Callable[[], float] = time.monotonic) -> None:
        self._gpu = gpu
        self._clock = clock
        self._before: Optional[int] = None
        self._started_at = 0.0

    def start(self) -> None:
        self._before = self._gpu.energy_mj()
        self._started_at = self._clock()

    def poll(self) -> None:
        pass

    def stop(self) -> Optional[EnergyWindow]:
        after = self._gpu.energy_mj()
        seconds = self._clock() - self._started_at
        if self._before is None or after is None or after < self._before:
            return None
        return _window((after - self._before) / 1000.0, seconds)


class RaplEnergy:
    """CPU package energy from RAPL counters; polled only to see every wrap (one small file read per package)."""

    source = "rapl"
    needs_polling = True

    def __init__(self, domains: list[sensors.RaplDomain], clock: Callable[[], float] = time.monotonic) -> None:
        self._counter = sensors.RaplCounter(domains)
        self._clock = clock
        self._started_at = 0.0

    def start(self) -> None:
        self._counter.start()
        self._started_at = self._clock()

    def poll(self) -> None:
        self._counter.poll()

    def stop(self) -> Optional[EnergyWindow]:
        self._counter.poll()
        seconds = self._clock() - self._started_at
        energy_uj = self._counter.energy_uj
        return None if energy_uj is None else _window(energy_uj / 1e6, seconds)


class TegrastatsPower:
    """Board power from a running `tegrastats --interval MS`, for Jetsons whose INA3221 sysfs is not readable.

    Each printed line's board power is a sample, collected by a reader thread of its own. Lines do not line up
    with the window's edges, so energy = time-weighted mean power x window.
    """

    source = "tegrastats"
    needs_polling = False

    def __init__(self, command: Sequence[str], clock: Callable[[], float] = time.monotonic) -> None:
        self._command = list(command)
        self._clock = clock
        self._samples: list[tuple[float, float]] = []
        self._process: Optional[subprocess.Popen] = None
        self._reader: Optional[threading.Thread] = None
        self._window_start = 0.0

    def _read_lines(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            milliwatts = jetson.parse_tegrastats(line)["board_power_mw"]
            if milliwatts is not None:
                self._samples.append((self._clock(), milliwatts / 1000.0))

    def start(self) -> None:
        self._samples = []
        self._window_start = self._clock()
        try:
            self._process = subprocess.Popen(
                self._command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
        except OSError:
            self._process = None
            return
        self._reader = threading.Thread(target=self._read_lines, args=(self._process,), daemon=True)
        self._reader.start()

    def poll(self) -> None:
        pass

    def stop(self) -> Optional[EnergyWindow]:
        """The lines' time-weighted mean power over the window from start() to this call (the exit comes after)."""
        window_s = self._clock() - self._window_start
        if self._process is None:
            return None
        samples = list(self._samples)  # lines after this instant are outside the window
        self._process.terminate()
        # Reaped in the background: the process's exit is outside the window and does not delay the caller.
        threading.Thread(target=_reap, args=(self._process,), daemon=True).start()
        if not samples:
            return None
        span = samples[-1][0] - samples[0][0]
        mean_w = trapezoid_j(samples) / span if span > 0 else sum(w for _, w in samples) / len(samples)
        return _window(mean_w * window_s, window_s)


def _reap(process: subprocess.Popen) -> None:
    try:
        process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class _Choice:
    """What a measure is read from, or why it is not read (source '')."""

    source: str
    reason: str


class TelemetrySampler:
    """Telemetry over one window of timed steps; see the module docstring for the sources per device.

    root: filesystem root (a fake tree in tests). nvml: an `Nvml` GPU (a FakeNvml in tests); None loads pynvml
    when torch_device is cuda on a discrete GPU. vcgencmd: runner for `vcgencmd` (argv -> stdout) on a Pi.
    tegrastats_command: what prints tegrastats lines (the Jetson fallback when INA3221 is unreadable).
    clock: seconds, monotonic (a fake in tests).
    """

    def __init__(
        self,
        torch_device: str = "cpu",
        root: str = "/",
        nvml: Optional[Nvml] = None,
        interval_s: float = 0.1,
        vcgencmd: Optional[sensors.CommandRunner] = None,
        tegrastats_command: Optional[Sequence[str]] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.torch_device = torch_device
        self.root = root
        self.interval_s = interval_s
        self._clock = clock
        self.platform = detect_platform(root, torch_device)
        self._vcgencmd = vcgencmd
        self._gpu: Optional[Nvml] = None
        self._gpu_reason = ""
        if torch_device == "cuda" and self.platform != "jetson":
            self._gpu, self._gpu_reason = (nvml, "") if nvml is not None else load_nvml()

        self.energy: Optional[EnergyMeter] = None
        self.choices: dict[str, _Choice] = {}
        self.choices["energy"] = self._choose_energy(tegrastats_command)
        self._read_temp, self.choices["temperature"] = self._choose_temperature()
        self._read_clock, self.choices["clock"] = self._choose_clock()
        self._watch_gpu_throttle = self._gpu is not None and self._gpu.throttle_bits() is not None
        self.choices["throttle"] = self._choose_throttle()

        self._thread: Optional[threading.Thread] = None
        self._stop_event = threading.Event()
        self._meter_lock = threading.Lock()  # the thread's polls and stop() never touch the meter at once
        self._started = False
        self._max_temp: Optional[float] = None
        self._clock_before: Optional[float] = None
        self._throttle_bits_seen = 0
        self._pi_throttle_before: Optional[sensors.ThrottleState] = None

    # -- choosing sources (at construction: probes are cheap and come before any timing) -------------------
    def _choose_energy(self, tegrastats_command: Optional[Sequence[str]]) -> _Choice:
        if self.platform == "apple":
            reason = "macOS reports power only through `powermetrics`, which needs sudo"
        elif self.platform == "jetson":
            reason = self._choose_jetson_energy(tegrastats_command)
        elif self.platform == "raspberrypi":
            reason = self._choose_pi_energy()
        elif self.torch_device == "cuda":
            reason = self._choose_nvml_energy()
        else:
            domains, why_not = sensors.rapl_domains(self.root)
            if domains:
                self.energy = RaplEnergy(domains, clock=self._clock)
            reason = "CPU package counters: " + ", ".join(d.name for d in domains) if domains else why_not
        return _Choice(self.energy.source if self.energy else "", reason)

    def _choose_jetson_energy(self, tegrastats_command: Optional[Sequence[str]]) -> str:
        self._ina3221 = jetson.ina3221_channels(self.root)
        rails = jetson.read_rails_mw(self.root, self._ina3221)
        if rails:
            self.energy = SampledPower("ina3221", self._ina3221_watts, clock=self._clock)
            board = next((name for name in jetson.BOARD_RAILS if name in rails), "the sum of " + ", ".join(rails))
            return f"board power = {board} (INA3221 sysfs, {jetson.ina3221_layout(self.root)} layout), integrated"
        command = list(tegrastats_command) if tegrastats_command else None
        if command is None and os.path.exists(under(self.root, "/usr/bin/tegrastats")):
            command = ["tegrastats", "--interval", str(max(int(self.interval_s * 1000), 100))]
        if command is None:
            return "no readable INA3221 rails in sysfs and no tegrastats binary"
        self.energy = TegrastatsPower(command, clock=self._clock)
        return "board power from tegrastats lines (INA3221 sysfs unreadable; some releases print rails only to root)"

    def _ina3221_watts(self) -> Optional[float]:
        milliwatts = jetson.board_power_mw(jetson.read_rails_mw(self.root, self._ina3221))
        return None if milliwatts is None else milliwatts / 1000.0

    def _choose_pi_energy(self) -> str:
        if self._pmic_watts() is None:
            return "no power sensor: only the Pi 5 has one (`vcgencmd pmic_read_adc` gives no rails here)"
        self.energy = SampledPower(
            "pmic", self._pmic_watts, min_interval_s=max(PMIC_MIN_INTERVAL_S, self.interval_s), clock=self._clock
        )
        return "sum of the PMIC rails (`vcgencmd pmic_read_adc`, once a second; USB devices not included)"

    def _pmic_watts(self) -> Optional[float]:
        return sensors.parse_pmic_read_adc(sensors.run_vcgencmd("pmic_read_adc", runner=self._vcgencmd) or "")

    def _choose_nvml_energy(self) -> str:
        gpu = self._gpu
        if gpu is None:
            return self._gpu_reason
        if gpu.energy_mj() is not None:
            self.energy = NvmlEnergyCounter(gpu, clock=self._clock)
            return f"{gpu.name()}: total-energy counter (the GPU board only, not the CPU)"
        if gpu.power_mw() is not None:
            self.energy = SampledPower("nvml", lambda: _milli(gpu.power_mw()), clock=self._clock)
            return f"{gpu.name()}: power integrated over time (no energy counter before Volta)"
        return f"{gpu.name()} reports neither energy nor power through NVML"

    def _choose_temperature(self) -> tuple[Optional[Callable[[], Optional[float]]], _Choice]:
        if self._gpu is not None:
            if self._gpu.temperature_c() is not None:
                return self._gpu.temperature_c, _Choice("nvml", "GPU core temperature")
            return None, _Choice("", "NVML reports no GPU temperature")
        if self.platform == "apple":
            return None, _Choice("", "macOS gives temperatures only to privileged tools")
        files, source = sensors.temperature_files(self.root)
        temps = sensors.read_temperature_files(self.root, files)
        if not temps:
            return None, _Choice("", "no readable /sys/class/thermal zones or hwmon temperature sensors")
        files = {name: files[name] for name in temps}  # found once: a poll reads these files, never globs

        def hottest() -> Optional[float]:
            readings = sensors.read_temperature_files(self.root, files)
            return max(readings.values()) if readings else None

        return hottest, _Choice(source, "hottest of " + ", ".join(temps))

    def _choose_clock(self) -> tuple[Optional[Callable[[], Optional[float]]], _Choice]:
        if self._gpu is not None:
            if self._gpu.sm_clock_mhz() is not None:
                return self._gpu.sm_clock_mhz, _Choice("nvml_sm", "GPU SM clock")
            return None, _Choice("", "NVML reports no SM clock")
        if self.platform == "jetson" and self.torch_device == "cuda" and jetson.read_gpu_clock_mhz(self.root):
            return (lambda: jetson.read_gpu_clock_mhz(self.root)), _Choice("devfreq", "integrated GPU clock")
        if sensors.cpu_freq_mhz(self.root) is not None:
            return (lambda: sensors.cpu_freq_mhz(self.root)), _Choice("cpufreq", "mean current clock of all CPUs")
        return None, _Choice("", "no cpufreq in /sys/devices/system/cpu (virtual machines usually hide it)")

    def _choose_throttle(self) -> _Choice:
        signals = []
        if self._read_clock is not None:
            signals.append(("clock", f"a clock fall of more than {CLOCK_DROP_FRACTION:.0%}"))
        if self._watch_gpu_throttle:
            signals.append(("nvml", "NVML clock-event reasons"))
        if self.platform == "raspberrypi" and self._pi_throttle_state() is not None:
            signals.append(("vcgencmd", "vcgencmd get_throttled bits"))
        if not signals:
            return _Choice("", "no throttle bits and no clock to watch")
        return _Choice("+".join(s for s, _ in signals), "flags " + ", ".join(w for _, w in signals))

    def _pi_throttle_state(self) -> Optional[sensors.ThrottleState]:
        return sensors.parse_throttled(sensors.run_vcgencmd("get_throttled", runner=self._vcgencmd) or "")

    def describe(self) -> dict[str, tuple[str, str]]:
        """{measure: (source or '', what is read or why nothing is)} for energy, temperature, clock, throttle."""
        return {name: (choice.source, choice.reason) for name, choice in self.choices.items()}

    # -- the window -------------------------------------------------------------------------------------------
    def _poll_readings(self) -> None:
        """Temperature and GPU throttle bits (the energy meter is polled separately)."""
        if self._read_temp is not None:
            temp = self._read_temp()
            if temp is not None:
                self._max_temp = temp if self._max_temp is None else max(self._max_temp, temp)
        if self._watch_gpu_throttle and self._gpu is not None:
            bits = self._gpu.throttle_bits()
            if bits is not None:
                self._throttle_bits_seen |= bits

    def _run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            if self.energy is not None and self.energy.needs_polling:
                with self._meter_lock:
                    if self._stop_event.is_set():  # stop() closed the meter's window while this poll waited
                        return
                    self.energy.poll()
            self._poll_readings()

    def _needs_thread(self) -> bool:
        polled_energy = self.energy is not None and self.energy.needs_polling
        return polled_energy or self._read_temp is not None or self._watch_gpu_throttle

    def start(self) -> None:
        """Take the 'before' readings and start polling where a source needs it. Call right before timing."""
        self._max_temp = None
        self._throttle_bits_seen = 0
        self._clock_before = self._read_clock() if self._read_clock else None
        self._pi_throttle_before = self._pi_throttle_state() if "vcgencmd" in self.choices["throttle"].source else None
        self._poll_readings()
        if self.energy is not None:
            self.energy.start()  # the window opens with the meter's first reading
        self._stop_event.clear()
        if self._needs_thread():
            self._thread = threading.Thread(target=self._run, name="w2vprof-telemetry", daemon=True)
            self._thread.start()
        self._started = True

    def stop(self, steps: int) -> dict[str, object]:
        """The telemetry fields of the window since start(): energy per batch = the window's joules / steps, and
        average power = the same joules / the same window (see the module docstring). Call right after timing."""
        fields = empty_fields()
        if not self._started:
            return fields
        self._started = False
        meter = self.energy
        with self._meter_lock:  # first, so the window closes now: joining the thread comes after
            self._stop_event.set()
            window = meter.stop() if meter is not None else None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._poll_readings()
        if meter is not None and window is not None and steps > 0:
            fields.update(
                energy_j_per_batch=window.joules / steps, avg_power_w=window.watts, energy_source=meter.source
            )
        if self._max_temp is not None:
            fields.update(max_temp_c=self._max_temp, temp_source=self.choices["temperature"].source)
        clock_after = self._read_clock() if self._read_clock else None
        if self._clock_before is not None or clock_after is not None:
            fields.update(
                clock_mhz_before=self._clock_before,
                clock_mhz_after=clock_after,
                clock_source=self.choices["clock"].source,
            )
        fields.update(self._throttle(clock_after))
        return fields

    def _throttle(self, clock_after: Optional[float]) -> dict[str, object]:
        """throttled: True with reasons, False when watched and nothing happened, None when nothing was watched."""
        watched = False
        reasons: list[str] = []
        if self._clock_before is not None and clock_after is not None:
            watched = True
            if clock_after < self._clock_before * (1 - CLOCK_DROP_FRACTION):
                reasons.append(f"clock fell from {self._clock_before:.0f} to {clock_after:.0f} MHz")
        if self._watch_gpu_throttle:
            watched = True
            reasons += decode_throttle_bits(self._throttle_bits_seen)
        if self._pi_throttle_before is not None:
            after = self._pi_throttle_state()
            if after is not None:
                watched = True
                reasons += sensors.throttled_during(self._pi_throttle_before, after)
        if not watched:
            return {"throttled": None, "throttle_reason": ""}
        return {"throttled": bool(reasons), "throttle_reason": "; ".join(dict.fromkeys(reasons))}


def _milli(value: Optional[float]) -> Optional[float]:
    return None if value is None else value / 1000.0
