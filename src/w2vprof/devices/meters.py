"""Energy meters: how each source turns its readings into the joules and seconds of one window.

    meter.start()             # first reading: the window opens
    meter.poll()              # where `needs_polling`: a sample (power) or a wrap check (RAPL), from a thread
    window = meter.stop()     # last reading: EnergyWindow(joules, seconds), or None

Which meter a machine gets is the telemetry registry's choice (w2vprof.devices.sources); the sampler that opens and
closes the window around the timed steps is w2vprof.devices.telemetry.TelemetrySampler.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence

from w2vprof.devices import jetson, sensors
from w2vprof.devices.nvml import Nvml

__all__ = [
    "EnergyMeter",
    "EnergyWindow",
    "SampledPower",
    "trapezoid_j",
    "NvmlEnergyCounter",
    "RaplEnergy",
    "TegrastatsPower",
    "milli",
]


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


def milli(value: Optional[float]) -> Optional[float]:
    """Thousandths to units (mW -> W), None kept."""
    return None if value is None else value / 1000.0
