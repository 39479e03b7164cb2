"""Telemetry readers on recorded lines and fake sysfs trees; the sampler with a fake NVML and a fake clock."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli
from w2vprof.devices import available_sources, identify
from w2vprof.devices.jetson import jetpack_for_l4t, jetson_identity, parse_nv_tegra_release, parse_tegrastats, read_ina3221_mw
from w2vprof.devices.sensors import RaplCounter, parse_measure_temp, parse_pmic_read_adc, parse_throttled, rapl_domains
from w2vprof.devices.telemetry import TelemetrySampler

JP4 = ("RAM 4412/7772MB (lfb 237x4MB) SWAP 139/3886MB (cached 2MB) CPU [9%@1190,6%@1190,6%@1190,5%@1190,4%@1190,8%@1267] "
       "EMC_FREQ 10%@1600 GR3D_FREQ 62%@306 APE 150 MTS fg 0% bg 0% AO@41.5C GPU@43C PMIC@100C AUX@41.5C CPU@43.5C "
       "thermal@42.55C VDD_IN 4067/4067 VDD_CPU_GPU_CV 738/738 VDD_SOC 1353/1353")
JP5 = ("07-09-2024 13:31:31 RAM 3168/6851MB (lfb 2x4MB) SWAP 161/3426MB (cached 0MB) CPU [23%@1397,17%@1192,16%@1190,"
       "13%@1190,23%@1190,10%@1190] EMC_FREQ 2%@204 GR3D_FREQ 0%@[114] VIC_FREQ 115 APE 150 AUX@45C CPU@46.5C "
       "thermal@45.6C AO@45C GPU@45.5C PMIC@50C VDD_IN 2763mW/2846mW VDD_CPU_GPU_CV 650mW/670mW VDD_SOC 650mW/711mW")
JP6 = ("11-28-2026 10:00:00 RAM 2900/7620MB (lfb 3x4MB) SWAP 0/3810MB (cached 0MB) CPU [2%@729,1%@729,off,off,0%@729,0%@729]  "
       "GR3D_FREQ 0% cpu@53.968C soc2@-256C soc0@51.5C tj@54.1C NVENC off NVDEC off  VDD_IN 4983mW/4983mW "
       "VDD_CPU_GPU_CV 552mW/552mW VDD_SOC 1426mW/1426mW")
JP7 = ("11-28-2026 10:00:00 RAM 5100/62000MB (lfb 100x4MB) CPU [5%@1100] GR3D_FREQ 12%@[1300,1300] "
       "cpu@52.968C/52.968C gpu@50.1C/50.0C VDD_GPU_SOC 5139mW/5139mW/5139mW VDD_CPU_CV 900mW/900mW/900mW NEWFIELD 7x9")
AGX_ORIN_NO_VDD_IN = "RAM 1000/30000MB GR3D_FREQ 5%@[305] VDD_GPU_SOC 3000mW/3000mW VDD_CPU_CV 800mW/800mW VIN_SYS_5V0 2000mW/2000mW"


def test_tegrastats_jetpack4():
    parsed = parse_tegrastats(JP4)
    assert parsed["ram_used_bytes"] == 4412 * 2**20 and parsed["ram_total_bytes"] == 7772 * 2**20
    assert parsed["gpu_load_pct"] == 62 and parsed["gpu_freq_mhz"] == 306
    assert parsed["board_power_mw"] == 4067  # VDD_IN, no unit in JetPack 4
    assert parsed["temps_c"]["CPU"] == 43.5 and parsed["temps_c"]["thermal"] == 42.55


def test_tegrastats_jetpack5():
    parsed = parse_tegrastats(JP5)
    assert parsed["ram_used_bytes"] == 3168 * 2**20
    assert parsed["gpu_load_pct"] == 0 and parsed["gpu_freq_mhz"] == 114
    assert parsed["board_power_mw"] == 2763
    assert parsed["rails_mw"] == {"VDD_IN": 2763, "VDD_CPU_GPU_CV": 650, "VDD_SOC": 650}


def test_tegrastats_jetpack6_drops_offline_sensors():
    parsed = parse_tegrastats(JP6)
    assert parsed["gpu_load_pct"] == 0 and parsed["gpu_freq_mhz"] is None
    assert "soc2" not in parsed["temps_c"] and parsed["temps_c"]["tj"] == 54.1
    assert parsed["board_power_mw"] == 4983


def test_tegrastats_jetpack7_and_unknown_fields():
    parsed = parse_tegrastats(JP7)
    assert parsed["gpu_load_pct"] == 12 and parsed["gpu_freq_mhz"] == 1300
    assert parsed["temps_c"] == {"cpu": 52.968, "gpu": 50.1}
    # no VDD_IN / POM_5V_IN: the sum of the rails, 5139 + 900
    assert parsed["board_power_mw"] == 6039


def test_tegrastats_without_rails_or_gpu():
    parsed = parse_tegrastats("RAM 100/200MB (lfb 1x1MB) CPU [1%@100]")
    assert parsed["board_power_mw"] is None and parsed["gpu_load_pct"] is None and parsed["temps_c"] == {}
    assert parse_tegrastats(AGX_ORIN_NO_VDD_IN)["board_power_mw"] == 5800
    assert parse_tegrastats("")["ram_used_bytes"] is None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_ina3221_jetpack4_and_5_layouts(tmp_path):
    jp4 = tmp_path / "jp4" / "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    _write(jp4 / "rail_name_0", "VDD_IN\n")
    _write(jp4 / "in_power0_input", "4067\n")
    _write(jp4 / "rail_name_1", "NC\n")
    _write(jp4 / "in_power1_input", "5\n")
    assert read_ina3221_mw(str(tmp_path / "jp4")) == {"VDD_IN": 4067.0}
    jp5 = tmp_path / "jp5" / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    _write(jp5 / "in1_label", "VDD_IN\n")
    _write(jp5 / "in1_input", "5000\n")  # mV
    _write(jp5 / "curr1_input", "800\n")  # mA -> 5000 * 800 / 1000 = 4000 mW
    _write(jp5 / "in2_label", "VDD_CPU_GPU_CV\n")
    _write(jp5 / "in2_input", "5000\n")
    _write(jp5 / "curr2_input", "100\n")
    _write(jp5 / "in7_label", "sum of shunt voltages\n")
    _write(jp5 / "in7_input", "1\n")
    _write(jp5 / "curr7_input", "1\n")
    assert read_ina3221_mw(str(tmp_path / "jp5")) == {"VDD_IN": 4000.0, "VDD_CPU_GPU_CV": 500.0}


def test_jetson_identity(tmp_path):
    _write(tmp_path / "etc/nv_tegra_release", "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref\n")
    _write(tmp_path / "proc/device-tree/model", "NVIDIA Jetson Xavier NX Developer Kit\x00")
    _write(tmp_path / "var/lib/nvpmodel/status", "pmode:0008\n")
    identity = jetson_identity(str(tmp_path))
    assert identity == {"model": "NVIDIA Jetson Xavier NX Developer Kit", "l4t": "35.4.1", "jetpack": "5", "power_mode": "0008"}
    assert parse_nv_tegra_release("# R32 (release), REVISION: 7.1") == "32.7.1"
    assert [jetpack_for_l4t(v) for v in ("32.7.1", "36.3", "38.2")] == ["4", "6", "7"]
    assert jetson_identity(str(tmp_path / "nothing")) is None


def test_raspberry_pi_throttle_bits_and_vcgencmd():
    state = parse_throttled("throttled=0x50005\n")
    # 0x50005: bits 0, 2 now; bits 16, 18 since boot
    assert state.value == 0x50005
    assert state.now == ["under-voltage", "throttled"]
    assert state.since_boot == ["under-voltage", "throttled"]
    assert parse_throttled("throttled=0x0").now == [] and parse_throttled("garbage") is None
    assert parse_measure_temp("temp=39.5'C") == 39.5
    adc = (" 3V7_WL_SW_A current(0)=0.10000000A\n   3V3_SYS_A current(1)=0.50000000A\n"
           " 3V7_WL_SW_V volt(8)=3.70000000V\n   3V3_SYS_V volt(9)=3.30000000V\n  EXT5V_V volt(24)=5.1V\n")
    # 0.1 A * 3.7 V + 0.5 A * 3.3 V = 2.02 W (EXT5V has no current: not paired)
    assert parse_pmic_read_adc(adc) == pytest.approx(2.02)


def _rapl_tree(root: Path, energy: int, max_range: int = 1000) -> Path:
    domain = root / "sys/class/powercap/intel-rapl:0"
    _write(domain / "name", "package-0\n")
    _write(domain / "energy_uj", f"{energy}\n")
    _write(domain / "max_energy_range_uj", f"{max_range}\n")
    _write(root / "sys/class/powercap/intel-rapl:0:0/name", "core\n")
    return domain


def test_rapl_counts_across_a_wrap(tmp_path):
    domain = _rapl_tree(tmp_path, 900)
    domains, why = rapl_domains(str(tmp_path))
    assert [d.name for d in domains] == ["package-0"] and why == ""
    counter = RaplCounter(domains)
    (domain / "energy_uj").write_text("950\n")
    counter.poll()
    (domain / "energy_uj").write_text("100\n")  # wrapped at 1000: 50 to the top, then 100
    counter.poll()
    assert counter.energy_uj == 50 + 50 + 100
    assert rapl_domains(str(tmp_path / "none"))[1].startswith("no RAPL")


class FakeNvml:
    def __init__(self) -> None:
        self.energy = 10_000
        self.clock = 1800

    def name(self) -> str: return "Fake GPU"
    def driver_version(self) -> str: return "999.1"
    def memory_total_bytes(self): return 16 * 2**30
    def energy_mj(self): return self.energy
    def power_mw(self): return 250_000
    def temperature_c(self): return 71.0
    def sm_clock_mhz(self): return self.clock
    def throttle_bits(self): return 0x20 | 0x1  # software thermal slowdown (+ idle, which is not throttling)


def test_sampler_with_fake_nvml():
    nvml = FakeNvml()
    sampler = TelemetrySampler("cuda", root="/nonexistent", nvml=nvml, interval_s=0.01)
    sampler.start()
    nvml.energy += 5_000  # 5 J over the run
    nvml.clock = 1500
    fields = sampler.stop(steps=5)
    assert fields["energy_j_per_batch"] == pytest.approx(1.0) and fields["energy_source"] == "nvml"
    assert fields["max_temp_c"] == 71.0 and fields["temp_source"] == "nvml"
    assert (fields["clock_mhz_before"], fields["clock_mhz_after"]) == (1800, 1500)
    assert fields["throttled"] is True
    assert fields["throttle_reason"] == "clock fell from 1800 to 1500 MHz; software thermal slowdown"


def test_sampler_integrates_ina3221_power_on_a_fake_jetson(tmp_path):
    _write(tmp_path / "etc/nv_tegra_release", "# R36 (release), REVISION: 3.0\n")
    rail = tmp_path / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
    _write(rail / "in1_label", "VDD_IN\n")
    _write(rail / "in1_input", "5000\n")
    _write(rail / "curr1_input", "2000\n")  # 10 W
    _write(tmp_path / "sys/class/thermal/thermal_zone0/temp", "48500\n")
    ticks = iter(float(t) for t in range(100))
    sampler = TelemetrySampler("cuda", root=str(tmp_path), interval_s=3600, clock=lambda: next(ticks))
    sampler.start()  # the first sample at t = 1
    fields = sampler.stop(steps=2)  # the last sample at t = 2: 10 W for 1 s = 10 J
    assert fields["energy_source"] == "ina3221"
    assert fields["energy_j_per_batch"] == pytest.approx(5.0)
    assert fields["max_temp_c"] == 48.5 and fields["temp_source"] == "thermal_zone"


def test_sampler_on_a_machine_without_sources_invents_nothing(tmp_path):
    sampler = TelemetrySampler("cpu", root=str(tmp_path), interval_s=0.01)
    sampler.start()
    fields = sampler.stop(steps=3)
    assert fields["energy_j_per_batch"] is None and fields["energy_source"] == ""
    assert fields["max_temp_c"] is None and fields["throttled"] is None


def test_identify_unified_memory_on_jetson(tmp_path):
    _write(tmp_path / "etc/nv_tegra_release", "# R35 (release), REVISION: 4.1\n")
    _write(tmp_path / "proc/device-tree/model", "NVIDIA Jetson AGX Xavier\x00")
    identity = identify("cpu", root=str(tmp_path))
    assert identity["memory_ceiling_source"] == "os_available"
    assert identity["device_name"].startswith("NVIDIA Jetson AGX Xavier (JetPack 5")
    sources = {name: ok for name, ok, _ in available_sources("cpu", root=str(tmp_path), nvml=None)}
    assert sources["tegrastats"] is True and sources["nvml"] is False


def test_devices_command_on_this_machine():
    result = run_cli("devices")
    assert result.returncode == 0, result.stderr
    assert "rapl" in result.stdout and "Telemetry sources" in result.stdout


def test_profile_records_empty_energy_with_empty_source_here(tmp_path):
    from w2vprof.measure.engine import ProfileConfig, profile_configuration

    record = profile_configuration(ProfileConfig(model="tiny", batch=1, seconds=0.5, repeats=1)).record
    if any(name == "rapl" and ok for name, ok, _ in available_sources("cpu")):
        pytest.skip("this machine can read RAPL")
    assert record.energy_j_per_batch is None and record.energy_source == ""
