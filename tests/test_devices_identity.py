"""identify() and available_sources() on fake Jetson, Raspberry Pi and x86 trees; `w2vprof devices`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from w2vprof.cli.main import app, run
from w2vprof.devices import available_sources, detect_platform, identify
from w2vprof.devices.nvml import FakeNvml

IDENTITY_KEYS = {
    "device_name", "device_fingerprint", "cpu_model", "cpu_cores", "total_mem_bytes", "gpu_name",
    "memory_ceiling_bytes", "memory_ceiling_source", "hostname",
}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _meminfo(root: Path) -> None:
    _write(root / "proc/meminfo", "MemTotal:        7772000 kB\nMemFree:          500000 kB\nMemAvailable:    3000000 kB\n")


@pytest.fixture
def jetson_root(tmp_path: Path) -> Path:
    _write(tmp_path / "etc/nv_tegra_release", "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref\n")
    _write(tmp_path / "proc/device-tree/model", "NVIDIA Jetson Xavier NX Developer Kit\x00")
    _write(tmp_path / "var/lib/nvpmodel/status", "pmode:0008\n")
    _write(tmp_path / "etc/nvpmodel.conf", "< POWER_MODEL ID=8 NAME=MODE_20W_6CORE >\n")
    _write(tmp_path / "proc/cpuinfo", "processor\t: 0\nmodel name\t: ARMv8 Processor rev 0 (v8l)\n")
    _meminfo(tmp_path)
    hwmon = tmp_path / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    _write(hwmon / "in1_label", "VDD_IN\n")
    _write(hwmon / "in1_input", "5000\n")
    _write(hwmon / "curr1_input", "800\n")
    return tmp_path


def test_identify_jetson_unified_memory(jetson_root):
    identity = identify("cpu", root=str(jetson_root))
    assert IDENTITY_KEYS <= set(identity)
    assert identity["device_name"] == (
        "NVIDIA Jetson Xavier NX Developer Kit (JetPack 5, L4T 35.4.1, power mode MODE_20W_6CORE (0008))"
    )
    assert (identity["platform"], identity["l4t"], identity["jetpack"]) == ("jetson", "35.4.1", "5")
    assert identity["total_mem_bytes"] == 7772000 * 1024  # MemTotal kB (KiB)
    # Unified memory: the OS's available memory is the ceiling, not MemFree or the total.
    assert identity["memory_ceiling_bytes"] == 3000000 * 1024
    assert identity["memory_ceiling_source"] == "os_available"
    assert identity["cpu_model"] == "ARMv8 Processor rev 0 (v8l)"


def test_identify_power_mode_changes_the_fingerprint(jetson_root):
    before = identify("cpu", root=str(jetson_root))["device_fingerprint"]
    _write(jetson_root / "var/lib/nvpmodel/status", "pmode:0002\n")
    assert identify("cpu", root=str(jetson_root))["device_fingerprint"] != before
    assert identify("cpu", root=str(jetson_root))["power_mode"] == "0002"  # no name for mode 2 in the conf


def test_identify_raspberry_pi_and_x86(tmp_path):
    pi = tmp_path / "pi"
    _write(pi / "proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\x00")
    _write(pi / "proc/cpuinfo", "processor\t: 0\nHardware\t: BCM2835\nModel\t: Raspberry Pi 4 Model B Rev 1.4\n")
    _meminfo(pi)
    identity = identify("cpu", root=str(pi))
    assert (identity["platform"], identity["device_name"], identity["cpu_model"]) == (
        "raspberrypi", "Raspberry Pi 4 Model B Rev 1.4", "BCM2835"
    )
    assert (identity["memory_ceiling_bytes"], identity["memory_ceiling_source"]) == (7772000 * 1024, "os_total")

    x86 = tmp_path / "x86"
    _write(x86 / "proc/cpuinfo", "vendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz\n")
    _meminfo(x86)
    identity = identify("cpu", root=str(x86))
    assert identity["platform"] == "x86" and identity["device_name"] == "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz"


def test_detect_platform(tmp_path, jetson_root):
    assert detect_platform(str(jetson_root)) == "jetson"
    assert detect_platform(str(tmp_path / "empty"), "mps") == "apple"
    assert detect_platform(str(tmp_path / "empty")) == "other"


def test_available_sources_on_a_fake_jetson(jetson_root):
    sources = {name: (ok, why) for name, ok, why in available_sources("cuda", root=str(jetson_root))}
    assert sources["ina3221"] == (True, "board power (JetPack 5+ hwmon layout): VDD_IN 4000 mW")  # 5000*800/1000
    assert sources["nvml"][0] is False and "Jetson" in sources["nvml"][1]
    assert sources["rapl"][0] is False and sources["pmic"] == (False, "not a Raspberry Pi")


def test_available_sources_with_a_fake_gpu(tmp_path):
    gpu = FakeNvml(gpu_name="NVIDIA A40", driver="550.54", energy_mj_values=[1])
    sources = {name: (ok, why) for name, ok, why in available_sources("cuda", root=str(tmp_path), nvml=gpu)}
    assert sources["nvml"] == (True, "NVIDIA A40, driver 550.54: energy counter, temperature, SM clock")


def test_available_sources_on_a_pi5(tmp_path):
    _write(tmp_path / "proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\x00")
    adc = "3V3_SYS_A current(1)=0.50000000A\n3V3_SYS_V volt(9)=3.30000000V\n"

    def vcgencmd(argv):
        return adc if argv[1] == "pmic_read_adc" else "throttled=0x50005"

    sources = {name: (ok, why) for name, ok, why in available_sources("cpu", root=str(tmp_path), vcgencmd=vcgencmd)}
    assert sources["pmic"] == (True, "Pi 5 PMIC rails: 1.65 W now")  # 0.5 A * 3.3 V
    assert sources["vcgencmd"] == (True, "throttle bits 0x50005")


def test_devices_command_on_a_fake_jetson(jetson_root):
    result = CliRunner().invoke(app, ["devices", "--device", "cpu", "--root", str(jetson_root), "--format", "json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["identity"]["memory_ceiling_source"] == "os_available"
    assert info["recorded"]["energy"]["source"] == "ina3221"
    assert {row["source"] for row in info["sources"] if row["available"]} >= {"ina3221", "tegrastats"}


def test_devices_command_on_this_machine_explains_energy():
    result = CliRunner().invoke(app, ["devices", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Telemetry sources" in result.output and "rapl" in result.output
    rapl_ok, rapl_why = next((ok, why) for name, ok, why in available_sources("cpu") if name == "rapl")
    if not rapl_ok:  # the reason (missing / root only / unreadable) is printed; its first words suffice here
        assert rapl_why.split()[0] in result.output


def test_devices_command_bad_format_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(["devices", "--device", "cpu", "--format", "xml"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "w2vprof: error: unknown --format 'xml'; choose from table, json"
