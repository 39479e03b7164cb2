"""Telemetry parsers on recorded output: tegrastats (JetPack 4-7), vcgencmd, nvpmodel, nv_tegra_release."""

from __future__ import annotations

from pathlib import Path

import pytest

from w2vprof.devices import jetson, sensors
from w2vprof.devices.nvml import decode_throttle_bits

FIXTURES = Path(__file__).parent / "fixtures" / "telemetry"
MIB = 1024 * 1024


def _tegrastats_lines() -> dict[str, str]:
    lines = {}
    for raw in (FIXTURES / "tegrastats.txt").read_text().splitlines():
        if raw and not raw.startswith("#"):
            name, _, line = raw.partition("\t")
            lines[name] = line
    return lines


LINES = _tegrastats_lines()


def test_tegrastats_jetpack4_rails_without_units():
    parsed = jetson.parse_tegrastats(LINES["jp4_xavier_nx"])
    assert parsed["ram_used_bytes"] == 4412 * MIB  # 4412 MiB = 4_626_317_312 bytes
    assert parsed["ram_total_bytes"] == 7772 * MIB
    assert (parsed["gpu_load_pct"], parsed["gpu_freq_mhz"]) == (62.0, 306.0)
    assert parsed["rails_mw"] == {"VDD_IN": 4067.0, "VDD_CPU_GPU_CV": 738.0, "VDD_SOC": 1353.0}
    assert parsed["board_power_mw"] == 4067.0  # VDD_IN, not the sum 4067 + 738 + 1353
    assert parsed["temps_c"]["CPU"] == 43.5 and parsed["temps_c"]["thermal"] == 42.55
    assert "9%" not in "".join(parsed["temps_c"])  # the CPU list [9%@1190,...] is not a temperature


def test_tegrastats_nano_board_rail_is_pom_5v_in():
    parsed = jetson.parse_tegrastats(LINES["jp4_nano"])
    assert parsed["board_power_mw"] == 2471.0
    assert "IRAM" not in parsed["rails_mw"]  # `IRAM 0/252kB` is memory, not a rail


def test_tegrastats_jetpack5_timestamp_and_bracketed_gpu_clock():
    parsed = jetson.parse_tegrastats(LINES["jp5_xavier_nx"])
    assert parsed["ram_used_bytes"] == 3168 * MIB
    assert (parsed["gpu_load_pct"], parsed["gpu_freq_mhz"]) == (0.0, 114.0)
    assert parsed["board_power_mw"] == 2763.0  # current value of `VDD_IN 2763mW/2846mW`, not the average


def test_tegrastats_jetpack6_lowercase_offline_and_idle_gpu():
    parsed = jetson.parse_tegrastats(LINES["jp6_orin_nano"])
    assert parsed["temps_c"] == {"cpu": 53.968, "soc0": 51.5, "tj": 54.1}  # soc2@-256C is offline: dropped
    assert (parsed["gpu_load_pct"], parsed["gpu_freq_mhz"]) == (0.0, None)  # `GR3D_FREQ 0%`: no clock printed
    assert parsed["board_power_mw"] == 4983.0


def test_tegrastats_without_board_rail_sums_the_rails():
    parsed = jetson.parse_tegrastats(LINES["jp6_agx_orin"])
    assert parsed["board_power_mw"] == 6200.0  # 3000 + 800 + 2000 + 400


def test_tegrastats_jetpack7_and_unknown_fields():
    parsed = jetson.parse_tegrastats(LINES["jp7_thor"])
    assert parsed["temps_c"] == {"cpu": 52.968, "gpu": 50.1}  # current value of `cpu@52.968C/52.968C`
    assert (parsed["gpu_load_pct"], parsed["gpu_freq_mhz"]) == (12.0, 1300.0)
    assert parsed["rails_mw"] == {"VDD_GPU_SOC": 5139.0, "VDD_CPU_CV": 900.0}  # NEWFIELD, OTHER 3/4kB ignored
    assert parsed["board_power_mw"] == 6039.0  # 5139 + 900


@pytest.mark.parametrize("line", ["", "garbage @@ 1/2/3 %%", "RAM 100/200MB CPU [1%@100]", "VDD_IN 12/"])
def test_tegrastats_never_fails(line):
    parsed = jetson.parse_tegrastats(line)
    assert parsed["board_power_mw"] is None and parsed["gpu_load_pct"] is None and parsed["temps_c"] == {}


def test_board_power_rules():
    assert jetson.board_power_mw({}) is None
    assert jetson.board_power_mw({"POM_5V_IN": 2000.0, "POM_5V_GPU": 500.0}) == 2000.0
    assert jetson.board_power_mw({"A": 1.5, "B": 2.5}) == 4.0


def test_l4t_release_and_jetpack():
    assert jetson.parse_nv_tegra_release("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref") == "35.4.1"
    assert jetson.parse_nv_tegra_release("# R32 (release), REVISION: 7.1") == "32.7.1"
    assert jetson.parse_nv_tegra_release("not a release file") == ""
    assert [jetson.jetpack_for_l4t(v) for v in ("32.7.1", "35.4.1", "36.3.0", "38.2.0", "31.1", "")] == [
        "4",
        "5",
        "6",
        "7",
        "",
        "",
    ]


def test_nvpmodel_status_and_conf():
    assert jetson.parse_nvpmodel_status("pmode:0002 fmode:quiet\n") == "0002"
    assert jetson.parse_nvpmodel_status("") == ""
    conf = "< POWER_MODEL ID=0 NAME=MODE_15W_2CORE >\nCPU_ONLINE CORE_0 1\n< POWER_MODEL ID=2 NAME=MODE_15W_6CORE >\n"
    assert jetson.parse_nvpmodel_conf(conf) == {0: "MODE_15W_2CORE", 2: "MODE_15W_6CORE"}


def test_raspberry_pi_throttled_0x50005():
    state = sensors.parse_throttled("throttled=0x50005\n")
    # 0x50005 = 0b0101_0000_0000_0000_0101: bits 0, 2 (now) and 16, 18 (since boot)
    assert state.value == 0x50005
    assert state.now == ["under-voltage", "throttled"]
    assert state.since_boot == ["under-voltage", "throttled"]
    assert sensors.parse_throttled("throttled=0x0").now == []
    assert sensors.parse_throttled('error=1 error_msg="Command not registered"') is None


def test_pi_throttled_during_a_run_ignores_old_sticky_bits():
    before = sensors.parse_throttled("throttled=0x50000")  # under-voltage and throttling happened before the run
    quiet_after = sensors.parse_throttled("throttled=0x50000")
    assert sensors.throttled_during(before, quiet_after) == []
    hot_after = sensors.parse_throttled("throttled=0xd0008")  # soft temp limit now; bit 19 newly set
    assert sensors.throttled_during(before, hot_after) == [
        "soft temperature limit",
        "soft temperature limit (occurred during the run)",
    ]


def test_vcgencmd_temperature_and_pmic():
    assert sensors.parse_measure_temp("temp=39.5'C\n") == 39.5
    assert sensors.parse_measure_temp("nothing") is None
    text = (FIXTURES / "pmic_read_adc.txt").read_text()
    rails = sensors.parse_pmic_rails(text)
    assert set(rails) == {"3V7_WL_SW", "3V3_SYS", "1V8_SYS", "DDR_VDD2"}  # EXT5V and BATT have no current
    # 0.1 * 3.7 + 0.5 * 3.3 + 0.2 * 1.8 + 0.02 * 1.1 = 0.37 + 1.65 + 0.36 + 0.022 = 2.402 W
    assert sensors.parse_pmic_read_adc(text) == pytest.approx(2.402)
    assert sensors.parse_pmic_read_adc("error=2") is None


def test_run_vcgencmd_with_an_injected_runner():
    seen = []

    def runner(argv):
        seen.append(list(argv))
        return "temp=40.0'C"

    assert sensors.run_vcgencmd("measure_temp", runner=runner) == "temp=40.0'C"
    assert seen == [["vcgencmd", "measure_temp"]]

    def missing(argv):
        raise FileNotFoundError("vcgencmd")

    assert sensors.run_vcgencmd("measure_temp", runner=missing) is None


def test_nvml_throttle_bits():
    assert decode_throttle_bits(0x21) == ["software thermal slowdown"]  # 0x1 idle is not throttling
    assert decode_throttle_bits(0x4 | 0x80) == ["software power cap", "hardware power brake"]
    assert decode_throttle_bits(0x1 | 0x2 | 0x10 | 0x100) == []


def test_rapl_energy_delta_wraps():
    assert sensors.energy_delta_uj(100, 350, 1000) == 250
    assert sensors.energy_delta_uj(900, 100, 1000) == 200  # 100 to the top, then 100
    # the reference's example range: 262143328850 uJ
    assert sensors.energy_delta_uj(262143328000, 150, 262143328850) == 1000  # 850 + 150
