"""Telemetry over the timed steps of one configuration: energy, power, temperature, clocks and throttling.

    sampler = TelemetrySampler(torch_device="cpu", root="/")
    sampler.start()                      # right before the timed steps
    ...                                  # timed steps
    fields = sampler.stop(steps=5)       # the ResultRecord telemetry fields

What is read depends on the device (the registry's `chains`, w2vprof.devices.sources, which `w2vprof devices`
reads too; the meters are w2vprof.devices.meters):

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

import threading
import time
from typing import Any, Callable, Optional, Sequence

from w2vprof.devices import sensors
from w2vprof.devices.meters import EnergyMeter
from w2vprof.devices.nvml import Nvml, decode_throttle_bits
from w2vprof.devices.sources import Choice, Machine, MachineSources

__all__ = [
    "TELEMETRY_FIELDS",
    "CLOCK_DROP_FRACTION",
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


def empty_fields() -> dict[str, object]:
    """Every telemetry field unavailable: None for numbers, '' for sources and reasons."""
    return {name: ("" if name.endswith(("_source", "_reason")) else None) for name in TELEMETRY_FIELDS}


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
        machine = Machine(torch_device, root, nvml, vcgencmd, tegrastats_command, interval_s, clock)
        self.platform = machine.platform
        # Chosen at construction from the one registry of sources: probes are cheap and come before any timing.
        sources = MachineSources(machine)
        self.choices: dict[str, Choice] = {m: sources.choose(m) for m in ("energy", "temperature", "clock")}
        self.energy: Optional[EnergyMeter] = self.choices["energy"].reader
        self._read_temp: Optional[Callable[[], Optional[float]]] = self.choices["temperature"].reader
        self._read_clock: Optional[Callable[[], Optional[float]]] = self.choices["clock"].reader
        watchers = {watcher.source: watcher for watcher in sources.watchers("throttle")}
        self._read_gpu_throttle: Optional[Callable[[], Optional[int]]] = _reader(watchers.get("nvml"))
        self._read_pi_throttle: Optional[Callable[[], Optional[sensors.ThrottleState]]] = _reader(
            watchers.get("vcgencmd")
        )
        self.choices["throttle"] = self._throttle_choice(list(watchers.values()))

        self._thread: Optional[threading.Thread] = None
        self._stop_event = threading.Event()
        self._meter_lock = threading.Lock()  # the thread's polls and stop() never touch the meter at once
        self._started = False
        self._max_temp: Optional[float] = None
        self._clock_before: Optional[float] = None
        self._throttle_bits_seen = 0
        self._pi_throttle_before: Optional[sensors.ThrottleState] = None

    def _throttle_choice(self, watchers: list[Choice]) -> Choice:
        """Throttling is watched through every signal there is: the chosen clock's fall, and the watchers' bits."""
        signals = [(w.source, w.reason) for w in watchers]
        if self._read_clock is not None:
            signals.insert(0, ("clock", f"a clock fall of more than {CLOCK_DROP_FRACTION:.0%}"))
        if not signals:
            return Choice("", "no throttle bits and no clock to watch")
        return Choice("+".join(s for s, _ in signals), "flags " + ", ".join(w for _, w in signals))

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
        if self._read_gpu_throttle is not None:
            bits = self._read_gpu_throttle()
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
        return polled_energy or self._read_temp is not None or self._read_gpu_throttle is not None

    def start(self) -> None:
        """Take the 'before' readings and start polling where a source needs it. Call right before timing."""
        self._max_temp = None
        self._throttle_bits_seen = 0
        self._clock_before = self._read_clock() if self._read_clock else None
        self._pi_throttle_before = self._read_pi_throttle() if self._read_pi_throttle else None
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
        if self._read_gpu_throttle is not None:
            watched = True
            reasons += decode_throttle_bits(self._throttle_bits_seen)
        if self._pi_throttle_before is not None:
            after = self._read_pi_throttle() if self._read_pi_throttle else None
            if after is not None:
                watched = True
                reasons += sensors.throttled_during(self._pi_throttle_before, after)
        if not watched:
            return {"throttled": None, "throttle_reason": ""}
        return {"throttled": bool(reasons), "throttle_reason": "; ".join(dict.fromkeys(reasons))}


def _reader(choice: Optional[Choice]) -> Any:
    return choice.reader if choice is not None else None
