"""Telemetry during the timed steps: energy, power, temperature, clocks and throttling, each with its source.

A background thread polls the sources that need it (power rails, RAPL wrap-around, temperatures) every
`interval_s`; it only reads small sysfs files, so it does not disturb the timed steps (benchmarks/
telemetry_overhead.py measures this). Where a source is missing the value stays empty with an empty source:
never a guess.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from w2vprof.devices import jetson, sensors
from w2vprof.devices.nvml import THROTTLE_REASONS, Nvml, open_nvml

__all__ = ["TelemetrySampler", "EMPTY_FIELDS"]

EMPTY_FIELDS: dict[str, Any] = {
    "energy_j_per_batch": None, "avg_power_w": None, "energy_source": "",
    "max_temp_c": None, "temp_source": "",
    "clock_mhz_before": None, "clock_mhz_after": None, "clock_source": "",
    "throttled": None, "throttle_reason": "",
}

#: a clock this much lower after the run than before it counts as throttling
_CLOCK_DROP = 0.9


class TelemetrySampler:
    def __init__(
        self,
        torch_device: str,
        root: str = "/",
        nvml: Optional[Nvml] = None,
        interval_s: float = 0.1,
        vcgencmd: Optional[Callable[[list[str]], str]] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.torch_device = torch_device
        self.root = root
        self.interval_s = interval_s
        self._vcgencmd = vcgencmd
        self._clock = clock
        self._nvml = nvml
        if self._nvml is None and torch_device == "cuda" and jetson.jetson_identity(root) is None:
            self._nvml, _ = open_nvml()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._power_samples: list[tuple[float, float]] = []  # (time, watts) for integrated sources
        self._temps: list[float] = []
        self._rapl: Optional[sensors.RaplCounter] = None
        self._energy_source = ""
        self._nvml_energy_start: Optional[int] = None
        self._start_time = 0.0
        self._clock_before: Optional[float] = None
        self._pi_throttle_before: Optional[sensors.ThrottleState] = None
        self._power_reader: Optional[Callable[[], Optional[float]]] = None
        self._temp_source = ""

    # -- what to read on this device ----------------------------------------------------------------
    def _choose_sources(self) -> None:
        if self._nvml is not None:
            start = self._nvml.energy_mj()
            if start is not None:
                self._nvml_energy_start, self._energy_source = start, "nvml"
            elif self._nvml.power_mw() is not None:
                self._power_reader, self._energy_source = lambda: (self._nvml.power_mw() or 0) / 1000.0, "nvml"
        elif jetson.jetson_identity(self.root) is not None:
            if jetson.read_ina3221_mw(self.root):
                self._power_reader = lambda: (jetson.board_power_mw(jetson.read_ina3221_mw(self.root)) or 0) / 1000.0
                self._energy_source = "ina3221"
        elif sensors.raspberry_pi_model(self.root):
            text = sensors.run_vcgencmd("pmic_read_adc", runner=self._vcgencmd)
            if text and sensors.parse_pmic_read_adc(text) is not None:
                self._power_reader = lambda: sensors.parse_pmic_read_adc(
                    sensors.run_vcgencmd("pmic_read_adc", runner=self._vcgencmd) or "") or 0.0
                self._energy_source = "pmic"
        else:
            domains, _why = sensors.rapl_domains(self.root)
            if domains:
                self._rapl, self._energy_source = sensors.RaplCounter(domains), "rapl"

    def _read_temp(self) -> Optional[float]:
        if self._nvml is not None:
            value = self._nvml.temperature_c()
            if value is not None:
                self._temp_source = "nvml"
                return float(value)
        value = sensors.max_thermal_c(self.root)
        if value is not None:
            self._temp_source = "thermal_zone"
        return value

    def _read_clock(self) -> tuple[Optional[float], str]:
        if self._nvml is not None:
            value = self._nvml.sm_clock_mhz()
            if value is not None:
                return float(value), "nvml_sm"
        value = sensors.cpu_freq_mhz(self.root)
        return (value, "cpufreq") if value is not None else (None, "")

    # -- sampling -----------------------------------------------------------------------------------
    def _sample(self) -> None:
        now = self._clock()
        if self._power_reader is not None:
            watts = self._power_reader()
            if watts is not None:
                self._power_samples.append((now, watts))
        if self._rapl is not None:
            self._rapl.poll()
        temp = self._read_temp()
        if temp is not None:
            self._temps.append(temp)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> None:
        self._choose_sources()
        self._clock_before, _ = self._read_clock()
        if sensors.raspberry_pi_model(self.root):
            self._pi_throttle_before = sensors.parse_throttled(
                sensors.run_vcgencmd("get_throttled", runner=self._vcgencmd) or "")
        self._start_time = self._clock()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="w2vprof-telemetry", daemon=True)
        self._thread.start()

    def stop(self, steps: int) -> dict[str, Any]:
        """Stop sampling; the record's telemetry fields for `steps` timed steps."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        elapsed = max(self._clock() - self._start_time, 1e-9)
        fields = dict(EMPTY_FIELDS)

        energy_j = None
        if self._nvml_energy_start is not None:
            end = self._nvml.energy_mj()
            if end is not None:
                energy_j = (end - self._nvml_energy_start) / 1000.0
        elif self._rapl is not None:
            energy_j = self._rapl.energy_uj / 1e6
        elif len(self._power_samples) >= 2:
            # trapezoids over the samples
            energy_j = sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in zip(self._power_samples, self._power_samples[1:]))
        if energy_j is not None and steps > 0:
            fields.update(energy_j_per_batch=energy_j / steps, avg_power_w=energy_j / elapsed, energy_source=self._energy_source)

        if self._temps:
            fields.update(max_temp_c=max(self._temps), temp_source=self._temp_source)

        after, clock_source = self._read_clock()
        reasons = []
        if self._clock_before is not None and after is not None:
            fields.update(clock_mhz_before=self._clock_before, clock_mhz_after=after, clock_source=clock_source)
            if after < _CLOCK_DROP * self._clock_before:
                reasons.append(f"clock fell from {self._clock_before:.0f} to {after:.0f} MHz")
        throttle_known = fields["clock_source"] != ""
        if self._nvml is not None:
            bits = self._nvml.throttle_bits()
            if bits is not None:
                throttle_known = True
                reasons += [name for bit, name in THROTTLE_REASONS.items() if bits & bit]
        if self._pi_throttle_before is not None:
            state = sensors.parse_throttled(sensors.run_vcgencmd("get_throttled", runner=self._vcgencmd) or "")
            if state is not None:
                throttle_known = True
                reasons += state.now
                new = set(state.since_boot) - set(self._pi_throttle_before.since_boot)
                reasons += [f"{name} (occurred during the run)" for name in sorted(new)]
        if throttle_known:
            fields.update(throttled=bool(reasons), throttle_reason="; ".join(dict.fromkeys(reasons)))
        return fields
