"""Pricing a mixed fleet: what one client of each fleet line costs per round at one configuration, or why it cannot
train it.

A line's cost (`LineCost`, the one type for it) is today's `fl_estimate` arithmetic for the line's device (its
seconds per batch x local steps), the model's download and upload over the line's own links, and the energy of the
local steps where the device's rows measured it. A device with an `oom` or `unsupported` row, or that feasibility's
memory fit rules out, is excluded; a device with neither a time nor a verdict is BadInput. `fl-estimate --fleet`
simulates rounds on these costs (w2vprof.analysis.fleet); `fl simulate --fleet` prices its clients' actual local
steps with them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from w2vprof.analysis.data import device_label, latest_by_config
from w2vprof.analysis.feasibility import feasibility, fit_memory
from w2vprof.analysis.fl_estimate import FlEstimateRow, FlSetting, fl_estimate
from w2vprof.devices.profiles import DeviceProfile, load_profiles
from w2vprof.errors import BadInput, SettingError
from w2vprof.paper import PAPER_SECONDS, USABLE_FRACTION
from w2vprof.records import ResultRecord, length_key

__all__ = ["FleetGroup", "FleetPrices", "LineCost", "model_update_bytes", "price_fleet"]


@dataclass(frozen=True)
class FleetGroup:
    """One line of the fleet file: `count` clients of one device with the same availability and links."""

    device: str
    count: int
    availability: float = 1.0  # fraction of rounds a client is reachable
    uplink_mbps: Optional[float] = None  # None: the upload costs nothing (or --bandwidth when given)
    downlink_mbps: Optional[float] = None
    line: int = 0  # line in the fleet file (2 = the first row under the header)


@dataclass(frozen=True)
class LineCost:
    """What one client of a fleet line costs per round at the configuration, or why it cannot train it."""

    group: FleetGroup
    excluded: str = ""  # '' when its clients can train; else oom, unsupported, or the memory fit's verdict
    sec_per_batch: Optional[float] = None  # s, measured at the configuration (None when excluded)
    compute_sec: Optional[float] = None  # s, local training of one round: batches x local epochs x sec_per_batch
    communication_sec: Optional[float] = None  # s, model download + update upload (None: no links, or excluded)
    energy_j: Optional[float] = None  # J per client round: energy_j_per_batch x batches x local epochs
    param_bytes: Optional[int] = None  # the measured row's parameter bytes (one model copy), where it has them

    @property
    def client_round_sec(self) -> Optional[float]:
        """s, compute + communication: when its update arrives (None when excluded)."""
        if self.excluded or self.compute_sec is None:
            return None
        return self.compute_sec + (self.communication_sec or 0.0)


@dataclass(frozen=True)
class FleetPrices:
    """The fleet priced at one configuration: the utterance length whose rows were used, and each line."""

    seconds: float
    update_bytes: Optional[int]  # one model copy on the wire; None without links
    lines: list[LineCost]

    def eligible_clients(self) -> int:
        return sum(line.group.count for line in self.lines if not line.excluded)

    def exclusions(self) -> dict[str, str]:
        """device -> why its clients cannot train, for the excluded devices, in fleet order."""
        return {line.group.device: line.excluded for line in self.lines if line.excluded}


def model_update_bytes(model: str) -> int:
    """Bytes of one FP32 copy of the model's parameters (counted on the meta device: no memory, no weights).

    NB: mixed precision still keeps and sends FP32 master weights, so this is the update size either way.
    """
    from w2vprof.models.size import parameter_bytes

    return parameter_bytes(model)


def price_fleet(
    rows: list[ResultRecord],
    fleet: list[FleetGroup],
    setting: FlSetting,
    profiles: Optional[list[DeviceProfile]] = None,
) -> FleetPrices:
    """Each line's measured seconds per batch at the setting's model, batch, precision and length (--seconds, else
    5.5 s when every fleet device has it, else the longest they share), its local round and its transfer seconds."""
    return with_links(unlinked_prices(rows, fleet, setting, profiles), fleet, setting)


def unlinked_prices(
    rows: list[ResultRecord],
    fleet: list[FleetGroup],
    setting: FlSetting,
    profiles: Optional[list[DeviceProfile]] = None,
) -> FleetPrices:
    """The fleet priced without its links yet (no update bytes, no communication): the lookup alone."""
    length = _common_length(rows, fleet, setting)
    by_device = _config_rows(rows, setting)
    names = list(dict.fromkeys(g.device for g in fleet))
    records = {name: by_device.get(name, {}).get(length) for name in names}
    measured = [r for r in rows if device_label(r) in names]
    local = replace(setting, clients=1, clients_per_round=None, seconds=None, bandwidth_mbps=None)
    try:
        estimates = {e.device: e for e in fl_estimate(measured, local) if length_key(e.seconds) == length}
    except BadInput:  # no fleet device has a usable time: each one is decided below
        estimates = {}
    costs = {}
    for name in names:
        record, estimate = records[name], estimates.get(name)
        if estimate is not None:
            costs[name] = _measured_cost(FleetGroup(name, 0), record, estimate, setting)
        elif record is not None and record.status in ("oom", "unsupported"):
            costs[name] = LineCost(FleetGroup(name, 0), excluded=record.status)
        else:
            costs[name] = LineCost(FleetGroup(name, 0), _memory_verdict(rows, name, setting, length, profiles, record))
    return FleetPrices(length, None, [replace(costs[group.device], group=group) for group in fleet])


def with_links(prices: FleetPrices, fleet: list[FleetGroup], setting: FlSetting) -> FleetPrices:
    """`prices` with the update's size and each trainable line's download + upload seconds."""
    size = _update_bytes(fleet, setting, prices.lines)
    lines = [
        line if line.excluded else replace(line, communication_sec=_communication_sec(line.group, setting, size))
        for line in prices.lines
    ]
    return FleetPrices(prices.seconds, size, lines)


def _measured_cost(
    group: FleetGroup, record: Optional[ResultRecord], estimate: FlEstimateRow, setting: FlSetting
) -> LineCost:
    energy = None
    if record is not None and record.energy_j_per_batch is not None:
        energy = record.energy_j_per_batch * estimate.batches_per_epoch * setting.local_epochs
    return LineCost(
        group,
        sec_per_batch=estimate.sec_per_batch,
        compute_sec=estimate.epoch_hours * setting.local_epochs * 3600,
        energy_j=energy,
        param_bytes=record.param_bytes if record is not None else None,
    )


def _config_rows(rows: list[ResultRecord], setting: FlSetting) -> dict[str, dict[float, ResultRecord]]:
    """device -> utterance length -> the latest row at the setting's model, batch and precision."""
    found: dict[str, dict[float, ResultRecord]] = {}
    for record in latest_by_config(rows).values():
        if (record.model, record.batch, record.precision) == (setting.model, setting.batch, setting.precision):
            found.setdefault(device_label(record), {})[length_key(record.seconds)] = record
    return found


def _common_length(rows: list[ResultRecord], fleet: list[FleetGroup], setting: FlSetting) -> float:
    """--seconds, else the paper's 5.5 s when every fleet device with rows has it, else the longest shared."""
    if setting.seconds is not None:
        return length_key(setting.seconds)
    by_device = _config_rows(rows, setting)
    lengths = [set(by_device[g.device]) for g in fleet if g.device in by_device]
    if not lengths:
        return PAPER_SECONDS
    common = set.intersection(*lengths)
    if not common:
        listed = "; ".join(
            f"{g.device}: {', '.join(f'{s:g}' for s in sorted(by_device[g.device]))} s"
            for g in fleet
            if g.device in by_device
        )
        raise SettingError(
            "seconds",
            f"needed: the fleet's devices share no utterance length for {setting.model}, "
            f"batch {setting.batch}, {setting.precision} ({listed}); measure one or pick one",
        )
    return PAPER_SECONDS if length_key(PAPER_SECONDS) in common else max(common)


def _memory_verdict(
    rows: list[ResultRecord],
    device: str,
    setting: FlSetting,
    length: float,
    profiles: Optional[list[DeviceProfile]],
    record: Optional[ResultRecord],
) -> str:
    """Why an unmeasured device is left out (feasibility's memory fit says it does not fit), else BadInput."""
    why = f"status {record.status}" if record is not None else "no row"
    matching = [p for p in (profiles if profiles is not None else load_profiles()) if p.name == device and p.memory_gb]
    if matching:
        try:
            decided = feasibility(fit_memory(rows), matching, USABLE_FRACTION, (setting.batch,), length)
        except BadInput:  # no fit can be made from these rows: nothing to decide with
            decided = None
        for row in decided.rows if decided else []:
            if row.model == setting.model and row.precision == setting.precision and not row.fits:
                return f"memory fit: needs {row.memory_at_target_gb:.1f} GB of {row.usable_gb:.1f} GB usable" + (
                    f" ({row.note})" if row.note else ""
                )
    raise BadInput(
        f"{device}: no measured time for {setting.model}, batch {setting.batch}, {setting.precision} at "
        f"{length:g} s ({why}), and no memory fit rules it out; measure it or remove it from the fleet"
    )


def _update_bytes(fleet: list[FleetGroup], setting: FlSetting, lines: list[LineCost]) -> Optional[int]:
    """One model copy: --model-bytes, else the rows' FP32 parameter bytes, else the model counted (x 4 bytes)."""
    linked = setting.bandwidth_mbps is not None or any(g.uplink_mbps or g.downlink_mbps for g in fleet)
    if not linked:
        return None
    if setting.model_bytes:
        return setting.model_bytes
    known = [line.param_bytes for line in lines if line.param_bytes]
    return known[0] if known else model_update_bytes(setting.model)


def _link_sec(update_bytes: Optional[int], mbps: Optional[float]) -> float:
    return 0.0 if not update_bytes or not mbps else update_bytes * 8 / (mbps * 1e6)


def _communication_sec(group: FleetGroup, setting: FlSetting, update_bytes: Optional[int]) -> Optional[float]:
    """Download of the global model + upload of the update, each over its own link (--bandwidth as default)."""
    if update_bytes is None:
        return None
    down = group.downlink_mbps or setting.bandwidth_mbps
    up = group.uplink_mbps or setting.bandwidth_mbps
    if down is None and up is None:
        return None
    return _link_sec(update_bytes, down) + _link_sec(update_bytes, up)
