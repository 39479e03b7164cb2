"""Sysfs readers on fake trees under tmp_path (INA3221 both layouts, RAPL, thermal, cpufreq, devfreq) and the
TelemetrySampler over them, with a fake NVML, a fake vcgencmd and a fake clock."""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

import pytest

from fake_nvml import FakeNvml
from w2vprof.devices import jetson, sensors
from w2vprof.devices.sysmem import MemAvailableSampler, read_mem_available_bytes, read_vm_hwm_bytes
from w2vprof.devices.telemetry import TELEMETRY_FIELDS, TelemetrySampler, empty_fields

FIXTURES = Path(__file__).parent / "fixtures" / "telemetry"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _ticks(start: int = 0):
    """A fake monotonic clock: 0, 1, 2, ... seconds, one tick per call (safe to call from several threads)."""
    counter = itertools.count(start)
    return lambda: float(next(counter))


def _wait_until(condition, timeout_s: float = 10.0) -> None:
    """Wait for a background thread's work (polls, process lines); fail rather than hang."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "background telemetry never arrived"
        time.sleep(0.002)


def _jetpack4_ina3221(root: Path) -> None:
    folder = root / "sys/bus/i2c/drivers/ina3221x/7-0040/iio:device0"
    for channel, (label, milliwatts) in enumerate([("POM_5V_IN", "2471"), ("POM_5V_GPU", "39"), ("NC", "5")]):
        _write(folder / f"rail_name_{channel}", label + "\n")
        _write(folder / f"in_power{channel}_input", milliwatts + "\n")


def _jetpack5_ina3221(root: Path, vdd_in_ma: str = "2000") -> Path:
    folder = root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    channels = {
        1: ("VDD_IN", "5000", vdd_in_ma),
        2: ("VDD_CPU_GPU_CV", "5000", "100"),
        3: ("NC", "0", "0"),
        7: ("sum of shunt voltages", "1", "1"),
    }
    for channel, (label, millivolts, milliamps) in channels.items():
        _write(folder / f"in{channel}_label", label + "\n")
        _write(folder / f"in{channel}_input", millivolts + "\n")
        _write(folder / f"curr{channel}_input", milliamps + "\n")
    return folder


def _jetson(root: Path, release: str = "# R35 (release), REVISION: 4.1, GCID: 1, BOARD: t186ref\n") -> Path:
    _write(root / "etc/nv_tegra_release", release)
    return root


def _rapl(root: Path, energy_uj: int, max_range_uj: int = 262143328850) -> Path:
    domain = root / "sys/class/powercap/intel-rapl:0"
    _write(domain / "name", "package-0\n")
    _write(domain / "energy_uj", f"{energy_uj}\n")
    _write(domain / "max_energy_range_uj", f"{max_range_uj}\n")
    _write(root / "sys/class/powercap/intel-rapl:0:0/name", "core\n")  # a sub-domain: never summed
    _write(root / "sys/class/powercap/intel-rapl:0:0/energy_uj", "5\n")
    _write(root / "sys/class/powercap/intel-rapl:1/name", "psys\n")  # overlaps the package: never summed
    _write(root / "sys/class/powercap/intel-rapl:1/max_energy_range_uj", "1000\n")
    return domain / "energy_uj"


# -- readers --------------------------------------------------------------------------------------------------


def test_ina3221_jetpack4_iio_layout(tmp_path):
    _jetpack4_ina3221(tmp_path)
    assert jetson.read_ina3221_mw(str(tmp_path)) == {"POM_5V_IN": 2471.0, "POM_5V_GPU": 39.0}  # NC skipped
    assert jetson.ina3221_layout(str(tmp_path)) == "JetPack 4 iio"


def test_ina3221_jetpack5_hwmon_layout(tmp_path):
    _jetpack5_ina3221(tmp_path)
    # VDD_IN: 5000 mV * 2000 mA / 1000 = 10000 mW; VDD_CPU_GPU_CV: 5000 * 100 / 1000 = 500 mW; NC and 7 skipped
    assert jetson.read_ina3221_mw(str(tmp_path)) == {"VDD_IN": 10000.0, "VDD_CPU_GPU_CV": 500.0}
    assert jetson.ina3221_layout(str(tmp_path)) == "JetPack 5+ hwmon"
    assert jetson.read_ina3221_mw(str(tmp_path / "elsewhere")) == {}


def test_jetson_devfreq_clock(tmp_path):
    _write(tmp_path / "sys/class/devfreq/17000000.ga10b/cur_freq", "624750000\n")  # Hz
    assert jetson.read_gpu_clock_mhz(str(tmp_path)) == 624.75


def test_rapl_package_domains_and_wrap(tmp_path):
    energy_file = _rapl(tmp_path, 262143328000)
    domains, why_not = sensors.rapl_domains(str(tmp_path))
    assert [d.name for d in domains] == ["package-0"] and why_not == ""
    counter = sensors.RaplCounter(domains)
    energy_file.write_text("262143328800\n")
    counter.poll()
    energy_file.write_text("150\n")  # wrapped: 50 to the top of 262143328850, then 150
    counter.poll()
    assert counter.energy_uj == 800 + 50 + 150


def test_rapl_missing_unreadable_and_root_only(tmp_path, monkeypatch):
    assert sensors.rapl_domains(str(tmp_path))[1].startswith("no RAPL in /sys/class/powercap")
    energy_file = _rapl(tmp_path, 1)
    energy_file.unlink()
    energy_file.mkdir()  # something that exists but cannot be read as a number
    assert "cannot be read" in sensors.rapl_domains(str(tmp_path))[1]

    def root_only(domain):
        raise PermissionError(13, "Permission denied")

    # The suite may run as root, where chmod 000 would not deny: simulate the kernel's 0400 mode instead.
    monkeypatch.setattr(sensors.RaplCounter, "read", staticmethod(root_only))
    domains, why_not = sensors.rapl_domains(str(tmp_path))
    assert domains == [] and "root only" in why_not


def test_thermal_zones_then_hwmon(tmp_path):
    _write(tmp_path / "sys/class/hwmon/hwmon0/name", "k10temp\n")
    _write(tmp_path / "sys/class/hwmon/hwmon0/temp1_input", "61250\n")
    assert sensors.read_temperatures_c(str(tmp_path)) == ({"k10temp/temp1": 61.25}, "hwmon")
    _write(tmp_path / "sys/class/thermal/thermal_zone0/type", "CPU-therm\n")
    _write(tmp_path / "sys/class/thermal/thermal_zone0/temp", "48500\n")
    _write(tmp_path / "sys/class/thermal/thermal_zone1/temp", "-256000\n")  # offline
    assert sensors.read_temperatures_c(str(tmp_path)) == ({"CPU-therm": 48.5}, "thermal_zone")


def test_cpufreq_mean_of_cpus(tmp_path):
    for cpu, khz in enumerate(["1800000", "1500000"]):
        _write(tmp_path / f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq", khz + "\n")
    assert sensors.cpu_freq_mhz(str(tmp_path)) == 1650.0  # (1800000 + 1500000) / 2 / 1000
    assert sensors.cpu_freq_mhz(str(tmp_path / "none")) is None


# -- the sampler ------------------------------------------------------------------------------------------------


def test_sampler_nvml_energy_counter_clock_fall_and_throttle_bits():
    gpu = FakeNvml(
        energy_mj_values=[10_000, 10_000, 16_000],  # choice probe, start, stop: 6 J
        sm_clock_values=[1800, 1800, 1500],  # choice probe, before, after
        temperature_values=[65.0, 65.0, 71.0],
        throttle_bit_values=[0x1, 0x1, 0x20 | 0x1],  # software thermal slowdown (+ idle: not throttling)
    )
    sampler = TelemetrySampler("cuda", root="/nonexistent", nvml=gpu, interval_s=3600, clock=_ticks())
    assert sampler.describe()["energy"][0] == "nvml"
    sampler.start()
    fields = sampler.stop(steps=3)
    assert set(fields) == set(TELEMETRY_FIELDS)
    assert fields["energy_j_per_batch"] == pytest.approx(2.0)  # (16000 - 10000) mJ = 6 J / 3 steps
    assert fields["avg_power_w"] == pytest.approx(6.0)  # 6 J over the fake clock's 1 s window
    assert (fields["energy_source"], fields["max_temp_c"], fields["temp_source"]) == ("nvml", 71.0, "nvml")
    assert (fields["clock_mhz_before"], fields["clock_mhz_after"], fields["clock_source"]) == (1800, 1500, "nvml_sm")
    assert fields["throttled"] is True
    assert fields["throttle_reason"] == "clock fell from 1800 to 1500 MHz; software thermal slowdown"


def test_sampler_jetson_ina3221_integrates_board_power(tmp_path):
    _jetpack5_ina3221(_jetson(tmp_path))
    _write(tmp_path / "sys/class/thermal/thermal_zone0/temp", "48500\n")
    sampler = TelemetrySampler("cuda", root=str(tmp_path), interval_s=3600, clock=_ticks())
    sampler.start()  # the first sample (VDD_IN 10 W) at t=0
    fields = sampler.stop(steps=2)  # the last at t=1: 10 W x 1 s = 10 J
    assert fields["energy_source"] == "ina3221" and fields["energy_j_per_batch"] == pytest.approx(5.0)
    assert (fields["max_temp_c"], fields["temp_source"]) == (48.5, "thermal_zone")
    assert fields["clock_source"] == "" and fields["throttled"] is None  # no clock to watch in this tree


def test_sampler_polls_in_the_background(tmp_path):
    folder = _jetpack5_ina3221(_jetson(tmp_path))
    sampler = TelemetrySampler("cpu", root=str(tmp_path), interval_s=0.001, clock=_ticks())
    sampler.start()  # 10 W sampled at t=0
    (folder / "curr1_input").write_text("4000\n")  # 20 W from now on: only polls see the change before stop
    _wait_until(lambda: sampler.energy._samples[-1][1] == 20.0)  # the thread polled and saw 20 W
    fields = sampler.stop(steps=1)
    assert 10.0 < fields["avg_power_w"] < 20.0  # between the two levels: the first sample was 10 W


def test_sampler_power_and_energy_share_one_window(tmp_path):
    """A constant 250 W reads 250 W, and energy per batch x steps / window is that power exactly."""
    gpu = FakeNvml(power_mw_values=[250_000.0], throttle_bit_values=[0])  # no energy counter: power integrated
    clock = _ticks()
    sampler = TelemetrySampler("cuda", root=str(tmp_path), nvml=gpu, interval_s=3600, clock=clock)
    sampler.start()  # the window opens with the first power sample at t=0
    for _ in range(5):
        clock()  # the timed steps take time: the fake clock moves on to t=5
    fields = sampler.stop(steps=4)  # the window closes with the last sample at t=6
    assert fields["avg_power_w"] == pytest.approx(250.0, rel=1e-12)
    assert fields["energy_j_per_batch"] * 4 == pytest.approx(250.0 * 6, rel=1e-12)  # 6 s at 250 W over 4 steps
    assert fields["throttled"] is False and fields["throttle_reason"] == ""


def test_sampler_ina3221_window_is_the_meters_window(tmp_path):
    _jetpack5_ina3221(_jetson(tmp_path))  # VDD_IN 10 W
    sampler = TelemetrySampler("cuda", root=str(tmp_path), interval_s=3600, clock=_ticks(100))
    sampler.start()
    fields = sampler.stop(steps=3)
    assert fields["avg_power_w"] == pytest.approx(10.0, rel=1e-12)  # not diluted by the sampler's own work
    assert fields["energy_j_per_batch"] * 3 / fields["avg_power_w"] == pytest.approx(1.0)  # the 1 s window


def test_sampler_rapl_counts_the_window_across_a_wrap(tmp_path):
    energy_file = _rapl(tmp_path, 262143000000)
    for cpu in (0, 1):
        _write(tmp_path / f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq", "2400000\n")
    sampler = TelemetrySampler("cpu", root=str(tmp_path), interval_s=3600, clock=_ticks())
    sampler.start()  # counter at 262143000000, window opens at t=0
    energy_file.write_text("171171150\n")  # wrapped: 262143328850 - 262143000000 = 328850 uJ to the top, then this
    fields = sampler.stop(steps=5)  # window closes at t=1
    assert fields["energy_j_per_batch"] == pytest.approx(34.3)  # (328850 + 171171150) uJ = 171.5 J / 5
    assert fields["avg_power_w"] == pytest.approx(171.5)  # 171.5 J / 1 s
    assert fields["energy_source"] == "rapl"
    assert (fields["clock_mhz_before"], fields["clock_mhz_after"], fields["throttled"]) == (2400.0, 2400.0, False)


def test_sampler_raspberry_pi5_pmic_and_throttle_bits(tmp_path):
    _write(tmp_path / "proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\x00")
    throttled = iter(["throttled=0x0", "throttled=0x0", "throttled=0x20002"])  # choice, before, after

    def vcgencmd(argv):
        return (FIXTURES / "pmic_read_adc.txt").read_text() if argv[1] == "pmic_read_adc" else next(throttled)

    sampler = TelemetrySampler("cpu", root=str(tmp_path), interval_s=3600, vcgencmd=vcgencmd, clock=_ticks())
    assert sampler.describe()["throttle"][0] == "vcgencmd"
    sampler.start()
    fields = sampler.stop(steps=1)
    assert fields["energy_source"] == "pmic"
    assert fields["energy_j_per_batch"] == pytest.approx(2.402)  # 2.402 W (see the parser test) x 1 s
    assert fields["throttled"] is True
    assert fields["throttle_reason"] == "ARM frequency capped; ARM frequency capped (occurred during the run)"


def test_sampler_raspberry_pi4_has_no_power_sensor(tmp_path):
    _write(tmp_path / "proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\x00")
    sampler = TelemetrySampler("cpu", root=str(tmp_path), vcgencmd=lambda argv: "throttled=0x0")
    source, why = sampler.describe()["energy"]
    assert source == "" and "only the Pi 5" in why


def test_sampler_tegrastats_fallback_reads_a_live_process(tmp_path):
    _jetson(tmp_path)  # no INA3221 in sysfs: tegrastats lines instead
    line = (FIXTURES / "tegrastats.txt").read_text().splitlines()[3].split("\t", 1)[1]  # JetPack 5, VDD_IN 2763 mW
    script = f"import time\nfor _ in range(200):\n    print({line!r}, flush=True)\n    time.sleep(0.01)\n"
    sampler = TelemetrySampler(
        "cpu", root=str(tmp_path), tegrastats_command=[sys.executable, "-c", script], clock=_ticks()
    )
    assert sampler.describe()["energy"][0] == "tegrastats"
    sampler.start()
    _wait_until(lambda: len(sampler.energy._samples) >= 3)  # three lines arrived
    fields = sampler.stop(steps=1)
    assert fields["energy_source"] == "tegrastats"
    # Every line says 2763 mW: exactly that, however long stopping the process and its reader takes.
    assert fields["avg_power_w"] == pytest.approx(2.763, rel=1e-12)


def test_jetson_pmic_die_zone_is_not_a_temperature(tmp_path):
    """Nano / Xavier NX: the PMIC-Die zone always reads 100 C; the hottest zone must be a real sensor."""
    _jetson(tmp_path)
    zones = [
        ("AO-therm", "41500"),
        ("CPU-therm", "45500"),
        ("GPU-therm", "44000"),
        ("PLL-therm", "42000"),
        ("PMIC-Die", "100000"),
        ("thermal-fan-est", "44800"),
    ]
    for index, (name, millidegrees) in enumerate(zones):
        _write(tmp_path / f"sys/class/thermal/thermal_zone{index}/type", name + "\n")
        _write(tmp_path / f"sys/class/thermal/thermal_zone{index}/temp", millidegrees + "\n")
    readings, source = sensors.read_temperatures_c(str(tmp_path))
    assert "PMIC-Die" not in readings and source == "thermal_zone"
    assert max(readings.values()) == 45.5
    sampler = TelemetrySampler("cpu", root=str(tmp_path), interval_s=3600, clock=_ticks())
    assert "PMIC-Die" not in sampler.describe()["temperature"][1]
    sampler.start()
    assert sampler.stop(steps=1)["max_temp_c"] == 45.5  # CPU-therm


def test_sampler_on_a_bare_machine_invents_nothing(tmp_path):
    sampler = TelemetrySampler("cpu", root=str(tmp_path), interval_s=0.01)
    sampler.start()
    assert sampler._thread is None  # nothing to poll: no thread at all
    assert sampler.stop(steps=3) == empty_fields()
    assert TelemetrySampler("cpu", root=str(tmp_path)).stop(steps=3) == empty_fields()  # never started


def test_sampler_with_zero_steps_records_no_energy(tmp_path):
    _rapl(tmp_path, 0)
    sampler = TelemetrySampler("cpu", root=str(tmp_path), interval_s=3600)
    sampler.start()
    assert sampler.stop(steps=0)["energy_j_per_batch"] is None


def test_mps_has_no_power_source_and_says_why(tmp_path):
    choices = TelemetrySampler("mps", root=str(tmp_path)).describe()
    assert choices["energy"] == ("", "macOS reports power only through `powermetrics`, which needs sudo")
    assert os.path.isdir(tmp_path)


# -- system memory on unified-memory devices (fake /proc trees) -------------------------------------------------


def _mem_available(root: Path, kib: int) -> None:
    _write(root / "proc/meminfo", f"MemTotal: 7772000 kB\nMemFree: 500000 kB\nMemAvailable: {kib} kB\n")


def test_mem_available_drop_is_the_lowest_reading_of_the_window(tmp_path):
    _mem_available(tmp_path, 3_000_000)
    sampler = MemAvailableSampler(str(tmp_path), interval_s=3600)  # polled by hand here
    sampler.start()  # baseline 3_000_000 KiB
    _mem_available(tmp_path, 1_800_000)
    sampler.poll()  # the lowest point of the window
    _mem_available(tmp_path, 2_600_000)  # freed before the end: the drop is still the lowest point's
    assert sampler.stop() == 1_200_000 * 1024
    assert (sampler.baseline_bytes, sampler.lowest_bytes) == (3_000_000 * 1024, 1_800_000 * 1024)


def test_mem_available_sampler_polls_in_the_background(tmp_path):
    _mem_available(tmp_path, 3_000_000)
    sampler = MemAvailableSampler(str(tmp_path), interval_s=0.001)
    sampler.start()
    _mem_available(tmp_path, 2_000_000)
    _wait_until(lambda: sampler.lowest_bytes == 2_000_000 * 1024)
    _mem_available(tmp_path, 3_100_000)  # more available than at the start: no negative drop
    assert sampler.stop() == 1_000_000 * 1024


def test_mem_available_missing_or_growing(tmp_path):
    sampler = MemAvailableSampler(str(tmp_path / "nothing"), interval_s=3600)
    sampler.start()
    assert sampler.stop() is None  # no /proc/meminfo (macOS, or a kernel before 3.14 has no MemAvailable)
    _mem_available(tmp_path, 1_000_000)
    sampler = MemAvailableSampler(str(tmp_path), interval_s=3600)
    sampler.start()
    _mem_available(tmp_path, 1_500_000)
    assert sampler.stop() == 0
    assert MemAvailableSampler(str(tmp_path)).stop() is None  # never started


def test_process_high_water_mark(tmp_path):
    _write(
        tmp_path / "proc/self/status", "Name:\tpython\nVmPeak:\t 2000000 kB\nVmHWM:\t  523456 kB\nVmRSS:\t  400000 kB\n"
    )
    _write(tmp_path / "proc/4242/status", "Name:\tpython\nVmHWM:\t  1000 kB\n")
    assert read_vm_hwm_bytes(str(tmp_path)) == 523456 * 1024
    assert read_vm_hwm_bytes(str(tmp_path), pid=4242) == 1000 * 1024
    assert read_vm_hwm_bytes(str(tmp_path / "nothing")) is None
    _mem_available(tmp_path, 2_000_000)
    assert read_mem_available_bytes(str(tmp_path)) == 2_000_000 * 1024
