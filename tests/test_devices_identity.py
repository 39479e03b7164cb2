"""identify() and available_sources() on fake Jetson, Raspberry Pi and x86 trees; `w2vprof devices`."""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fake_nvml import FakeBoard, FakeCudaProperties, FakeNvml, FakePynvml
from fake_trees import jetson_tree, x86_tree
from w2vprof.cli.main import app, run
from w2vprof.devices import available_sources, detect_platform, identify
from w2vprof.devices.cpu import (
    cpuinfo_architecture,
    machine_architecture,
    process_machine,
    read_cpu_model,
    read_native_bf16,
    read_own_cpuinfo,
)
from w2vprof.devices.nvml import load_nvml

IDENTITY_KEYS = {
    "device_name",
    "device_fingerprint",
    "cpu_model",
    "cpu_cores",
    "total_mem_bytes",
    "gpu_name",
    "memory_ceiling_bytes",
    "memory_ceiling_source",
    "hostname",
}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _meminfo(root: Path) -> None:
    _write(
        root / "proc/meminfo",
        "MemTotal:        7772000 kB\nMemFree:          500000 kB\nMemAvailable:    3000000 kB\n",
    )


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
    assert set(identity) >= IDENTITY_KEYS
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


#: A Raspberry Pi 4's /proc/cpuinfo (64-bit kernel: `Hardware` names the BCM2835 family, not the BCM2711) and device
#: tree model and compatible, as files: .ci/arm64-emulated.sh bind-mounts the same ones into its aarch64 userland.
PI4_TREE = Path(__file__).parent / "fixtures" / "raspberry-pi-4"
PI4_CPUINFO = (PI4_TREE / "proc/cpuinfo").read_text()

# /proc/cpuinfo of a Jetson Xavier NX (JetPack 5): neither `model name` nor `Hardware`, only part numbers.
XAVIER_NX_CPUINFO = "".join(
    f"processor\t: {n}\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
    f"asimdhp cpuid asimdrdm dcpop\nCPU implementer\t: 0x4e\nCPU architecture: 8\nCPU variant\t: 0x0\n"
    f"CPU part\t: 0x004\nCPU revision\t: 0\n\n"
    for n in range(6)
)


@pytest.mark.parametrize("machine", [None, "aarch64"])
def test_identify_raspberry_pi_4_by_its_device_tree(tmp_path, machine):
    shutil.copytree(PI4_TREE, tmp_path, dirs_exist_ok=True)
    _meminfo(tmp_path)
    identity = identify("cpu", root=str(tmp_path), machine=machine)
    assert (identity["platform"], identity["device_name"]) == ("raspberrypi", "Raspberry Pi 4 Model B Rev 1.4")
    assert identity["cpu_model"] == "Broadcom BCM2711, 4x Cortex-A72"  # not the kernel's `Hardware: BCM2835`
    assert (identity["memory_ceiling_bytes"], identity["memory_ceiling_source"]) == (7772000 * 1024, "os_total")
    assert read_native_bf16(str(tmp_path), machine=machine) is False  # a Cortex-A72 has no BF16


#: /proc/cpuinfo of the x86 host an emulated aarch64 userland runs on (qemu-user passes the host's through).
EPYC_CPUINFO = (
    "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9454 48-Core Processor\n"
    "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
)


def test_an_aarch64_process_never_takes_the_x86_hosts_cpuinfo_for_its_own(tmp_path):
    """qemu-user: `platform.machine()` says aarch64, /proc/cpuinfo is the AMD host's. Platform, CPU, bfloat16 and
    the fingerprint follow the machine type, so emulated results never count as the host's device."""
    _write(tmp_path / "proc/cpuinfo", EPYC_CPUINFO)
    _meminfo(tmp_path)
    host = identify("cpu", root=str(tmp_path), machine="x86_64")
    emulated = identify("cpu", root=str(tmp_path), machine="aarch64")
    assert (host["platform"], host["cpu_model"]) == ("x86", "AMD EPYC 9454 48-Core Processor")
    assert emulated["platform"] == "linux"
    assert (
        emulated["cpu_model"]
        == emulated["device_name"]
        == ("aarch64 (/proc/cpuinfo describes another architecture (x86): emulation?)")
    )
    assert emulated["device_fingerprint"] != host["device_fingerprint"]
    assert read_native_bf16(str(tmp_path), machine="x86_64") is True
    assert read_native_bf16(str(tmp_path), machine="aarch64") is False  # x86 flags never apply to an aarch64 process
    assert detect_platform(str(tmp_path), machine="aarch64") == "linux"
    assert read_own_cpuinfo(str(tmp_path), machine="aarch64") == (
        "",
        "/proc/cpuinfo describes another architecture (x86): emulation?",
    )
    # An x86 process on a kernel whose cpuinfo is Arm's (the other way round) sets it aside too.
    _write(tmp_path / "proc/cpuinfo", PI4_CPUINFO)
    assert detect_platform(str(tmp_path), machine="x86_64") == "x86"
    assert read_cpu_model(str(tmp_path), machine="x86_64").startswith("x86_64 (/proc/cpuinfo describes another")


@pytest.mark.parametrize(
    "machine, architecture",
    [("x86_64", "x86"), ("AMD64", "x86"), ("i686", "x86"), ("aarch64", "arm"), ("arm64", "arm"), ("armv7l", "arm")]
    + [("riscv64", ""), ("", "")],
)
def test_machine_types_name_their_architecture(machine, architecture):
    assert machine_architecture(machine) == architecture


def test_cpuinfo_says_its_architecture_or_nothing():
    assert cpuinfo_architecture(EPYC_CPUINFO) == "x86"
    assert cpuinfo_architecture("processor\t: 0\nflags\t\t: fpu sse2\n") == "x86"  # no vendor_id (some VMs)
    assert cpuinfo_architecture(PI4_CPUINFO) == "arm"
    assert cpuinfo_architecture("processor\t: 0\nmodel name\t: ARMv8 Processor rev 0 (v8l)\n") == ""  # trusted
    assert cpuinfo_architecture("") == ""


def test_under_a_fake_tree_its_own_cpuinfo_decides_unless_a_machine_is_given(tmp_path):
    _write(tmp_path / "proc/cpuinfo", EPYC_CPUINFO)
    assert process_machine(str(tmp_path)) == "" and process_machine(str(tmp_path), "aarch64") == "aarch64"
    assert detect_platform(str(tmp_path)) == "x86" and read_native_bf16(str(tmp_path)) is True
    assert process_machine("/") == platform.machine()  # the real root: this process's own


def test_identify_jetson_whose_cpuinfo_names_nothing(tmp_path):
    _write(tmp_path / "etc/nv_tegra_release", "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref\n")
    _write(tmp_path / "proc/device-tree/model", "NVIDIA Jetson Xavier NX Developer Kit\x00")
    _write(
        tmp_path / "proc/device-tree/compatible",
        "nvidia,p3509-0000+p3668-0001\x00nvidia,jetson-xavier-nx\x00nvidia,tegra194\x00",
    )
    _write(tmp_path / "proc/cpuinfo", XAVIER_NX_CPUINFO)
    _meminfo(tmp_path)
    identity = identify("cpu", root=str(tmp_path))
    assert identity["device_name"] == "NVIDIA Jetson Xavier NX Developer Kit (JetPack 5, L4T 35.4.1)"
    assert identity["cpu_model"] == "NVIDIA Tegra194, 6x Carmel"


def test_board_name_from_the_firmware_device_tree_then_compatible(tmp_path):
    """/proc/device-tree is a link to /sys/firmware/devicetree/base; containers often have only the latter."""
    firmware = tmp_path / "fw" / "sys/firmware/devicetree/base"
    _write(firmware / "model", "Raspberry Pi 5 Model B Rev 1.0\x00")
    _write(firmware / "compatible", "raspberrypi,5-model-b\x00brcm,bcm2712\x00")
    _meminfo(tmp_path / "fw")
    identity = identify("cpu", root=str(tmp_path / "fw"))
    assert (identity["platform"], identity["device_name"]) == ("raspberrypi", "Raspberry Pi 5 Model B Rev 1.0")
    assert identity["cpu_model"] == "Broadcom BCM2712"  # no cpuinfo in this tree: the SoC alone

    other = tmp_path / "rock5b"  # another Arm board: its own model names it; no model file: its compatible does
    _write(other / "proc/device-tree/model", "Radxa ROCK 5B\x00")
    _write(other / "proc/device-tree/compatible", "radxa,rock-5b\x00rockchip,rk3588\x00")
    _write(
        other / "proc/cpuinfo",
        "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd05\n\n"
        "processor\t: 1\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\n",
    )
    _meminfo(other)
    identity = identify("cpu", root=str(other))
    assert (identity["platform"], identity["device_name"]) == ("linux", "Radxa ROCK 5B")
    assert identity["cpu_model"] == "Rockchip RK3588, 1x Cortex-A55 + 1x Cortex-A76"
    (other / "proc/device-tree/model").unlink()
    assert identify("cpu", root=str(other))["device_name"] == "radxa,rock-5b"


def test_arm_cpu_model_falls_back_to_what_cpuinfo_has(tmp_path):
    _write(
        tmp_path / "proc/cpuinfo", "processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nHardware\t: BCM2835\n"
    )
    assert read_cpu_model(str(tmp_path)) == "ARMv7 Processor rev 4 (v7l)"  # no device tree, no part number
    _write(
        tmp_path / "proc/cpuinfo", "processor\t: 0\nCPU implementer\t: 0x99\nCPU part\t: 0x001\nHardware\t: Some SoC\n"
    )
    assert read_cpu_model(str(tmp_path)) == "Some SoC"  # an unknown core says nothing; Hardware is all there is


def test_identify_x86(tmp_path):
    _write(
        tmp_path / "proc/cpuinfo", "vendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz\n"
    )
    _meminfo(tmp_path)
    identity = identify("cpu", root=str(tmp_path))
    assert identity["platform"] == "x86" and identity["device_name"] == "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz"
    assert identity["cpu_model"] == "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz"


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


# -- which NVML device is torch's cuda:0 ---------------------------------------------------------------------------
# NVML numbers GPUs by PCI bus; CUDA puts the fastest first. Here the H100 is cuda:0 and NVML's device 1.
A100 = FakeBoard("NVIDIA A100-PCIE-40GB", "GPU-11111111-2222-3333-4444-555555555555", "00000000:3B:00.0")
H100 = FakeBoard("NVIDIA H100 PCIe", "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "00000000:86:00.0")


def test_nvml_follows_cuda0_by_uuid_not_by_index():
    cuda0 = FakeCudaProperties("NVIDIA H100 PCIe", uuid="aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
    gpu, why_not = load_nvml(pynvml_module=FakePynvml([A100, H100]), properties=cuda0, environ={})
    assert why_not == "" and gpu.name() == "NVIDIA H100 PCIe"


def test_nvml_follows_cuda0_by_pci_bus_when_there_is_no_uuid():
    cuda0 = FakeCudaProperties("NVIDIA H100 PCIe", pci_domain_id=0, pci_bus_id=0x86, pci_device_id=0)
    gpu, why_not = load_nvml(pynvml_module=FakePynvml([A100, H100]), properties=cuda0, environ={})
    assert why_not == "" and gpu.name() == "NVIDIA H100 PCIe"


def test_nvml_without_torch_properties_reads_cuda_visible_devices():
    boards = FakePynvml([A100, H100])
    by_uuid = {"CUDA_VISIBLE_DEVICES": H100.uuid}
    assert load_nvml(pynvml_module=boards, properties=None, environ=by_uuid)[0].name() == "NVIDIA H100 PCIe"
    in_bus_order = {"CUDA_VISIBLE_DEVICES": "1,0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert load_nvml(pynvml_module=boards, properties=None, environ=in_bus_order)[0].name() == "NVIDIA H100 PCIe"
    # CUDA's default order is fastest first: index 1 there need not be NVML's 1, so no guess.
    gpu, why_not = load_nvml(pynvml_module=boards, properties=None, environ={"CUDA_VISIBLE_DEVICES": "1"})
    assert gpu is None and "which NVML device" in why_not
    assert load_nvml(pynvml_module=FakePynvml([A100]), properties=None, environ={})[0].name() == A100.name


def test_nvml_unavailable_says_why():
    gpu, why_not = load_nvml(pynvml_module=FakePynvml([A100], fail_init=True), properties=None, environ={})
    assert gpu is None and "no NVIDIA driver" in why_not
    cuda0 = FakeCudaProperties("NVIDIA H100 PCIe", uuid="99999999-0000-0000-0000-000000000000")
    gpu, why_not = load_nvml(pynvml_module=FakePynvml([A100]), properties=cuda0, environ={})
    assert gpu is None and "cuda:0" in why_not  # torch's GPU is not among NVML's: never another card


# -- `w2vprof devices` byte for byte ------------------------------------------------------------------------------
# The goldens were written by main before the telemetry sources became one registry (issue 22); a change to them
# is a change users see. The host's name and core count and this machine's NVML are faked: only the tree decides.
GOLDEN = Path(__file__).parent / "golden"


def devices_output(root: Path, fmt: str, monkeypatch) -> str:
    """What `w2vprof devices --device cpu --format FMT` prints on a fake tree, on a host named edge-host with 6
    cores (the callers take NVML away: its listing would name this machine's GPU or driver)."""
    import os
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "edge-host")
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    result = CliRunner().invoke(app, ["devices", "--device", "cpu", "--root", str(root), "--format", fmt])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("tree", ["jetson", "x86"])
@pytest.mark.parametrize("fmt", ["table", "json"])
def test_devices_command_output_is_unchanged(tree, fmt, jetson_root, tmp_path, monkeypatch):
    import w2vprof.devices.sources as sources

    monkeypatch.setattr(sources, "load_nvml", lambda *args, **kwargs: (None, "pynvml is not installed"))
    root = jetson_tree(jetson_root) if tree == "jetson" else x86_tree(tmp_path / "x86")
    expected = (GOLDEN / f"devices_{tree}.{'txt' if fmt == 'table' else 'json'}").read_text(encoding="utf-8")
    assert devices_output(root, fmt, monkeypatch) == expected
