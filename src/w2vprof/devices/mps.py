"""Apple silicon: the chip's name. (MPS memory is sampled by w2vprof.measure.memory.StepPeakMemory.)"""

from __future__ import annotations

from w2vprof.devices.sensors import CommandRunner, run_command

__all__ = ["apple_chip_name"]


def apple_chip_name(runner: CommandRunner = run_command) -> str:
    """'Apple M2 Pro' from `sysctl -n machdep.cpu.brand_string`, '' where sysctl is not there (not a Mac)."""
    try:
        return runner(["sysctl", "-n", "machdep.cpu.brand_string"]).strip()
    except Exception:  # noqa: BLE001 - OSError, a failing exit, a timeout: no name rather than no profile
        return ""
