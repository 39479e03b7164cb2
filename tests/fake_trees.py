"""Fake filesystem trees of whole machines (an x86 server, a Jetson, a Raspberry Pi 5), for the tests that read a
machine through its files: `w2vprof devices`, the telemetry registry and the sampler."""

from __future__ import annotations

from pathlib import Path


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def x86_tree(root: Path) -> Path:
    """An Intel server: RAPL package counter, one hwmon sensor at 45 C, one CPU at 2400 MHz, 7.4 GiB."""
    write(root / "proc/cpuinfo", "vendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6230\n")
    write(root / "proc/meminfo", "MemTotal:        7772000 kB\nMemAvailable:    3000000 kB\n")
    for name, value in (("name", "package-0"), ("energy_uj", "1000"), ("max_energy_range_uj", "262143328850")):
        write(root / "sys/class/powercap/intel-rapl:0" / name, value + "\n")
    write(root / "sys/class/hwmon/hwmon0/name", "coretemp\n")
    write(root / "sys/class/hwmon/hwmon0/temp1_input", "45000\n")
    write(root / "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "2400000\n")
    return root


def jetson_tree(root: Path) -> Path:
    """A JetPack 5 Jetson's sensors: INA3221 VDD_IN (5 V x 800 mA), a thermal zone, GPU devfreq, CPU clocks and
    the tegrastats binary."""
    write(root / "etc/nv_tegra_release", "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref\n")
    hwmon = root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    for name, value in (("in1_label", "VDD_IN"), ("in1_input", "5000"), ("curr1_input", "800")):
        write(hwmon / name, value + "\n")
    write(root / "sys/class/thermal/thermal_zone0/type", "CPU-therm\n")
    write(root / "sys/class/thermal/thermal_zone0/temp", "48500\n")
    write(root / "sys/class/devfreq/17000000.ga10b/cur_freq", "624750000\n")
    write(root / "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "1420000\n")
    write(root / "usr/bin/tegrastats", "")
    return root


def pi5_tree(root: Path) -> Path:
    """A Raspberry Pi 5: its device-tree model, one thermal zone and a CPU clock (power comes from vcgencmd)."""
    write(root / "proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\x00")
    write(root / "sys/class/thermal/thermal_zone0/temp", "52000\n")
    write(root / "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "2400000\n")
    return root


def pi5_vcgencmd(argv: list[str]) -> str:
    """`vcgencmd` on a Pi 5: 0.5 A on the 3.3 V rail (1.65 W), nothing throttled."""
    if argv[1] == "pmic_read_adc":
        return "3V3_SYS_A current(1)=0.50000000A\n3V3_SYS_V volt(9)=3.30000000V\n"
    return "throttled=0x0"
