"""Hardware forecast (the paper's Sec. 4.1): years until a device matches a target's seconds per batch if compute
keeps doubling. Takes result rows (measured, or the paper's); knows no device's numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from w2vprof.analysis.data import device_label, latest_by_config, sec_per_batch
from w2vprof.errors import BadInput, SettingError
from w2vprof.paper import PAPER_SECONDS
from w2vprof.records import ResultRecord, length_key

__all__ = ["ForecastResult", "forecast"]


@dataclass
class ForecastResult:
    device: str
    target: str
    model: str
    batch: int
    precision: str
    seconds: float  # utterance length both times were measured at
    device_sec_per_batch: float
    target_sec_per_batch: float
    ratio: float  # device time / target time: the speed-up the device still needs
    doubling_months: float
    years: float  # log2(ratio) x doubling_months / 12 (0 when the device is already as fast)
    from_year: float
    year: float


def forecast(
    rows: list[ResultRecord],
    device: str,
    target: str,
    model: str = "base",
    batch: int = 4,
    precision: str = "fp32",
    doubling_months: float = 18.0,
    from_year: float = 2022.0,
    seconds: Optional[float] = None,
) -> ForecastResult:
    """Years until `device` matches `target`'s seconds per batch if compute doubles every `doubling_months`.

    NB: assumes seconds per batch falls in proportion to compute; memory bandwidth and software are ignored.
    """
    if not doubling_months > 0:
        raise SettingError("doubling_months", f"must be positive, got {doubling_months:g}")
    config = _Config(model, batch, precision, seconds)
    device_times, target_times = _measured_times(rows, device, config), _measured_times(rows, target, config)
    length = _shared_length(device, target, device_times, target_times, config)
    ratio = device_times[length] / target_times[length]
    years = max(math.log2(ratio), 0.0) * doubling_months / 12
    return ForecastResult(
        device,
        target,
        model,
        batch,
        precision,
        length,
        device_times[length],
        target_times[length],
        ratio,
        doubling_months,
        years,
        from_year,
        from_year + years,
    )


@dataclass(frozen=True)
class _Config:
    """The configuration both devices are compared at; `seconds` None: any utterance length."""

    model: str
    batch: int
    precision: str
    seconds: Optional[float]

    def key(self) -> tuple[str, int, str]:
        return self.model, self.batch, self.precision

    def described(self) -> str:
        return f"{self.model}, batch {self.batch}, {self.precision}"


def _measured_times(rows: list[ResultRecord], name: str, config: _Config) -> dict[float, float]:
    """Utterance length -> seconds per batch of device `name`'s latest ok rows at `config`."""
    known = sorted({device_label(r) for r in rows})
    if name not in known:
        raise BadInput(f"unknown device {name!r}; devices in the data: {', '.join(known)}")
    found: dict[float, float] = {}
    for key, record in latest_by_config(rows).items():
        measured = sec_per_batch(record)
        same_config = key[0] == name and (record.model, record.batch, record.precision) == config.key()
        at_length = config.seconds is None or length_key(record.seconds) == length_key(config.seconds)
        if same_config and record.status == "ok" and measured and at_length:
            found[length_key(record.seconds)] = measured
    if not found:
        raise BadInput(
            f"{name}: no measured time for {config.described()}"
            + (f" at {config.seconds:g} s" if config.seconds else "")
        )
    return found


def _shared_length(
    device: str, target: str, device_times: dict[float, float], target_times: dict[float, float], config: _Config
) -> float:
    """The paper's 5.5 s when both devices have it, else the longest length both have."""
    common = sorted(set(device_times) & set(target_times))
    if not common:
        listed = [", ".join(f"{s:g}" for s in sorted(found)) for found in (device_times, target_times)]
        raise BadInput(
            f"{device} and {target} share no utterance length for {config.described()} ({listed[0]} s vs {listed[1]} s)"
        )
    return PAPER_SECONDS if PAPER_SECONDS in common else common[-1]
