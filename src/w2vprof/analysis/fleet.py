"""Federated pretraining on a mixed fleet: each client is a measured device, a synchronous round waits for the
K-th update (or a deadline), clients that cannot hold the model never join.

The per-client cost is today's `fl_estimate` arithmetic (its seconds per batch x local steps) for the client's
device, plus a model download and upload over the client's own links. Which clients train in a round is drawn at
random (who is reachable, who is sampled), so the round time is a Monte Carlo estimate with a seed: the same seed
gives the same numbers. The fleet file is read by `w2vprof.analysis.fleet_io`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from w2vprof.analysis.data import DeviceProfile, device_label, latest_by_config, load_profiles
from w2vprof.analysis.feasibility import feasibility, fit_memory
from w2vprof.analysis.fl_estimate import FlSetting, fl_estimate
from w2vprof.errors import BadInput, SettingError
from w2vprof.paper import PAPER_SECONDS
from w2vprof.records import ResultRecord, length_key

__all__ = [
    "FleetGroup",
    "FleetDevice",
    "FleetFigures",
    "FleetEstimate",
    "LinePrice",
    "FleetPrices",
    "DEFAULT_TRIALS",
    "fl_estimate_fleet",
    "price_fleet",
    "model_update_bytes",
]

#: Monte Carlo repetitions of the whole training (R rounds each): enough for a stable 5th-95th percentile.
DEFAULT_TRIALS = 200
#: Share of a device's memory training may use when the memory fit decides (feasibility's default).
USABLE_FRACTION = 0.7


@dataclass(frozen=True)
class FleetGroup:
    """One line of the fleet file: `count` clients of one device with the same availability and links."""

    device: str
    count: int
    availability: float = 1.0  # fraction of rounds a client is reachable
    uplink_mbps: Optional[float] = None  # None: the upload costs nothing (or --bandwidth when given)
    downlink_mbps: Optional[float] = None
    line: int = 0  # line in the fleet file (2 = the first row under the header)


@dataclass
class FleetDevice:
    """One fleet line: what one of its clients costs per round, and how it fared in the simulated rounds."""

    line: int
    device: str
    clients: int
    availability: float
    uplink_mbps: Optional[float]
    downlink_mbps: Optional[float]
    excluded: str  # why its clients are never sampled ('' when they are): oom, unsupported, memory fit
    sec_per_batch: Optional[float]  # s, measured at the configuration
    compute_sec: Optional[float]  # s, local training of one round: batches x local epochs x sec_per_batch
    communication_sec: Optional[float]  # s, model download + update upload (None: no links given)
    client_round_sec: Optional[float]  # s, compute + communication: when its update arrives
    energy_j_per_client_round: Optional[float]  # J, energy_j_per_batch x batches x local epochs
    sampled_per_round: float  # clients of this line sampled per round (mean)
    updates_per_round: float  # of which entered the aggregate (mean)
    lost_updates_per_round: float  # of which arrived after the deadline (mean)
    slowest_share: float  # fraction of rounds whose end this line's client decided (the one the round waited for)


@dataclass
class FleetFigures:
    """The whole fleet: the configuration, the round model's settings and the Monte Carlo result."""

    model: str
    precision: str
    batch: int
    seconds: float  # utterance length of the measurements used
    samples_per_client: int
    local_epochs: float
    clients: int  # all clients in the fleet file
    eligible_clients: int  # those whose device can hold the configuration
    excluded_clients: int
    clients_per_round: int  # K: updates a round waits for
    over_commit: float
    sampled_per_round: int  # ceil(K x over_commit), at most the eligible clients
    deadline_sec: Optional[float]
    update_bytes: Optional[int]  # one model copy on the wire: parameters x 4 (FP32); None without links
    rounds: int
    trials: int
    seed: int
    round_sec_mean: float
    round_sec_p5: float
    round_sec_p95: float
    days_mean: float  # rounds x seconds per round / 86,400
    days_p5: float
    days_p95: float
    updates_per_round: float  # mean updates aggregated per round
    lost_updates_per_round: float  # mean updates that arrived after the deadline
    lost_updates_total: float  # mean over trials of the updates lost in all R rounds
    short_round_share: float  # rounds that aggregated fewer than K updates
    empty_round_share: float  # rounds in which no client was reachable
    energy_j_per_round: Optional[float]  # J, sampled clients of devices with energy_j_per_batch (mean)


@dataclass
class FleetEstimate:
    figures: FleetFigures
    devices: list[FleetDevice]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LinePrice:
    """What one client of a fleet line costs per round at the configuration, or why it cannot train it."""

    group: FleetGroup
    excluded: str  # '' when its clients can train; else oom, unsupported, or the memory fit's verdict
    sec_per_batch: Optional[float]  # s, measured at the configuration (None when excluded)
    communication_sec: Optional[float]  # s, model download + update upload (None: no links, or excluded)


@dataclass(frozen=True)
class FleetPrices:
    """The fleet priced at one configuration: the utterance length whose rows were used, and each line."""

    seconds: float
    update_bytes: Optional[int]  # one model copy on the wire; None without links
    lines: list[LinePrice]


@dataclass(frozen=True)
class _DeviceCost:
    """A device's measured cost at the configuration, or why it cannot train it."""

    excluded: str = ""
    sec_per_batch: Optional[float] = None
    compute_sec: Optional[float] = None
    energy_j: Optional[float] = None  # per client round
    param_bytes: Optional[int] = None


@dataclass
class _Tally:
    """Sums over every simulated round of every trial (numpy arrays)."""

    trial_sec: Any  # (trials,) seconds of R rounds
    sampled: Any  # (groups,)
    accepted: Any
    lost: Any
    bound: Any  # (groups,) rounds this group's client ended
    short_rounds: int
    empty_rounds: int


def model_update_bytes(model: str) -> int:
    """Bytes of one FP32 copy of the model's parameters (counted on the meta device: no memory, no weights).

    NB: mixed precision still keeps and sends FP32 master weights, so this is the update size either way.
    """
    from w2vprof.models.size import parameter_bytes

    return parameter_bytes(model)


def fl_estimate_fleet(
    rows: list[ResultRecord],
    fleet: list[FleetGroup],
    setting: FlSetting,
    clients_per_round: Optional[int] = None,
    deadline_s: Optional[float] = None,
    over_commit: float = 1.0,
    rounds: Optional[int] = None,
    seed: int = 0,
    trials: int = DEFAULT_TRIALS,
    profiles: Optional[list[DeviceProfile]] = None,
) -> FleetEstimate:
    """Synchronous FedAvg rounds on a mixed fleet, Monte Carlo over who is reachable and who is sampled.

    Per round each eligible client is reachable with its line's availability; ceil(K x over_commit) of the
    reachable ones are sampled uniformly; the round ends at the K-th arrival, or at `deadline_s` (updates after
    it are lost). `setting` gives the configuration and the local work (samples per client, batch, local
    epochs); `setting.bandwidth_mbps` is the link of lines without their own. `rounds` overrides setting.rounds.
    """
    setting = replace(setting, rounds=setting.rounds if rounds is None else rounds)
    _check_options(fleet, setting, deadline_s, over_commit, trials)
    length = _common_length(rows, fleet, setting)
    costs = _device_costs(rows, fleet, setting, length, profiles)
    eligible = sum(g.count for g in fleet if not costs[g.device].excluded)
    if not eligible:
        reasons = "; ".join(f"{name}: {cost.excluded}" for name, cost in costs.items())
        raise BadInput(
            f"no client of the fleet can train {setting.model} {setting.precision} batch {setting.batch} "
            f"at {length:g} s ({reasons})"
        )
    total = sum(g.count for g in fleet)
    wanted = clients_per_round or setting.clients_per_round or eligible
    if not 0 < wanted <= total:
        raise SettingError("clients_per_round", f"must be between 1 and the fleet's {total} clients, got {wanted}")
    sample_size = min(math.ceil(round(wanted * over_commit, 9)), eligible)
    update_bytes = _update_bytes(fleet, setting, costs)
    times = [_client_sec(g, costs[g.device], setting, update_bytes) for g in fleet]
    tally = _simulate(fleet, costs, times, wanted, sample_size, deadline_s, setting.rounds, trials, seed)
    figures = _figures(
        setting, length, fleet, costs, tally, wanted, over_commit, sample_size, deadline_s, update_bytes, trials, seed
    )
    devices = _device_rows(fleet, costs, times, update_bytes, setting, tally, trials)
    return FleetEstimate(figures, devices, _notes(fleet, costs, figures, setting))


def price_fleet(
    rows: list[ResultRecord],
    fleet: list[FleetGroup],
    setting: FlSetting,
    profiles: Optional[list[DeviceProfile]] = None,
) -> FleetPrices:
    """fl_estimate_fleet's cost lookup alone: each line's measured seconds per batch at the setting's model,
    batch, precision and length (the length chosen as fl_estimate_fleet chooses it) and its transfer seconds.
    `fl simulate --fleet` prices each simulated client's actual local steps with it."""
    length = _common_length(rows, fleet, setting)
    costs = _device_costs(rows, fleet, setting, length, profiles)
    update_bytes = _update_bytes(fleet, setting, costs)
    lines = [
        LinePrice(
            group,
            costs[group.device].excluded,
            costs[group.device].sec_per_batch,
            None if costs[group.device].excluded else _communication_sec(group, setting, update_bytes),
        )
        for group in fleet
    ]
    return FleetPrices(length, update_bytes, lines)


def _check_options(
    fleet: list[FleetGroup], setting: FlSetting, deadline_s: Optional[float], over_commit: float, trials: int
) -> None:
    if not fleet:
        raise BadInput("the fleet has no rows")
    for name in ("samples_per_client", "batch", "rounds"):
        if getattr(setting, name) <= 0:
            raise SettingError(name, f"must be positive, got {getattr(setting, name)}")
    if not setting.local_epochs > 0:
        raise SettingError("local_epochs", f"must be positive, got {setting.local_epochs:g}")
    if deadline_s is not None and not deadline_s > 0:
        raise SettingError("deadline", f"must be positive (seconds), got {deadline_s:g}")
    if not over_commit >= 1:
        raise SettingError("over_commit", f"must be 1 or more (sample K x F clients), got {over_commit:g}")
    if trials < 1:
        raise SettingError("trials", f"must be positive, got {trials}")
    if setting.bandwidth_mbps is not None and not setting.bandwidth_mbps > 0:
        raise SettingError("bandwidth", f"must be positive, got {setting.bandwidth_mbps:g}")


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


def _device_costs(
    rows: list[ResultRecord],
    fleet: list[FleetGroup],
    setting: FlSetting,
    length: float,
    profiles: Optional[list[DeviceProfile]],
) -> dict[str, _DeviceCost]:
    """Each fleet device's cost from fl_estimate's own lookup; oom / unsupported / no-fit devices are excluded."""
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
            energy = None
            if record is not None and record.energy_j_per_batch is not None:
                energy = record.energy_j_per_batch * estimate.batches_per_epoch * setting.local_epochs
            costs[name] = _DeviceCost(
                "",
                estimate.sec_per_batch,
                estimate.epoch_hours * setting.local_epochs * 3600,
                energy,
                record.param_bytes if record is not None else None,
            )
        elif record is not None and record.status in ("oom", "unsupported"):
            costs[name] = _DeviceCost(excluded=record.status)
        else:
            costs[name] = _DeviceCost(excluded=_memory_verdict(rows, name, setting, length, profiles, record))
    return costs


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


def _update_bytes(fleet: list[FleetGroup], setting: FlSetting, costs: dict[str, _DeviceCost]) -> Optional[int]:
    """One model copy: --model-bytes, else the rows' FP32 parameter bytes, else the model counted (x 4 bytes)."""
    linked = setting.bandwidth_mbps is not None or any(g.uplink_mbps or g.downlink_mbps for g in fleet)
    if not linked:
        return None
    if setting.model_bytes:
        return setting.model_bytes
    known = [c.param_bytes for c in costs.values() if c.param_bytes]
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


def _client_sec(group: FleetGroup, cost: _DeviceCost, setting: FlSetting, update_bytes: Optional[int]) -> float:
    if cost.excluded or cost.compute_sec is None:
        return math.inf
    return cost.compute_sec + (_communication_sec(group, setting, update_bytes) or 0.0)


def _sample_without_replacement(rng: Any, available: Any, draw: Any) -> Any:
    """Uniform sample of `draw` clients among the `available` ones per group (rows: trials), group by group:
    the count from one group is hypergeometric given the clients still to draw and the pool still left."""
    import numpy as np

    remaining, pool = draw.copy(), available.sum(axis=1)
    taken = np.zeros_like(available)
    for g in range(available.shape[1]):
        rest = pool - available[:, g]
        taken[:, g] = rng.hypergeometric(available[:, g], rest, remaining)
        remaining, pool = remaining - taken[:, g], rest
    return taken


def _simulate(
    fleet: list[FleetGroup],
    costs: dict[str, _DeviceCost],
    times: list[float],
    wanted: int,
    sample_size: int,
    deadline: Optional[float],
    rounds: int,
    trials: int,
    seed: int,
) -> _Tally:
    """R rounds x `trials` independent trainings, vectorised over the trials."""
    import numpy as np

    rng = np.random.default_rng(seed)
    counts = np.array([0 if costs[g.device].excluded else g.count for g in fleet])
    availability = np.array([g.availability for g in fleet])
    secs = np.array([t if math.isfinite(t) else 0.0 for t in times])
    order = np.argsort(secs, kind="stable")  # fastest first: the K-th arrival is a cumulative count
    late = secs > deadline if deadline is not None else np.zeros(len(fleet), dtype=bool)
    groups = len(fleet)
    tally = _Tally(np.zeros(trials), np.zeros(groups), np.zeros(groups), np.zeros(groups), np.zeros(groups), 0, 0)
    for _ in range(rounds):
        available = rng.binomial(counts, availability, size=(trials, groups))
        draw = np.minimum(sample_size, available.sum(axis=1))
        sampled = _sample_without_replacement(rng, available, draw)[:, order]
        needed = np.minimum(wanted, draw)
        cumulative = sampled.cumsum(axis=1)
        bound = order[(cumulative >= needed[:, None]).argmax(axis=1)]  # the group whose arrival ends the round
        empty = draw == 0
        cut = late[bound] & ~empty
        round_sec = np.where(empty | cut, deadline or 0.0, secs[bound])
        accepted = np.clip(needed[:, None] - (cumulative - sampled), 0, sampled)
        accepted = np.where(late[order][None, :] & cut[:, None], 0, accepted)
        lost = np.where(late[order][None, :] & cut[:, None], sampled, 0)
        tally.trial_sec += round_sec
        tally.sampled[order] += sampled.sum(axis=0)
        tally.accepted[order] += accepted.sum(axis=0)
        tally.lost[order] += lost.sum(axis=0)
        np.add.at(tally.bound, bound[~empty], 1)
        tally.short_rounds += int((accepted.sum(axis=1) < wanted).sum())
        tally.empty_rounds += int(empty.sum())
    return tally


def _figures(
    setting: FlSetting,
    length: float,
    fleet: list[FleetGroup],
    costs: dict[str, _DeviceCost],
    tally: _Tally,
    wanted: int,
    over_commit: float,
    sample_size: int,
    deadline: Optional[float],
    update_bytes: Optional[int],
    trials: int,
    seed: int,
) -> FleetFigures:
    import numpy as np

    played = setting.rounds * trials
    per_round = tally.trial_sec / setting.rounds
    days = tally.trial_sec / 86_400
    energy = [
        tally.sampled[i] * costs[g.device].energy_j for i, g in enumerate(fleet) if costs[g.device].energy_j is not None
    ]
    total = sum(g.count for g in fleet)
    eligible = sum(g.count for g in fleet if not costs[g.device].excluded)
    return FleetFigures(
        model=setting.model,
        precision=setting.precision,
        batch=setting.batch,
        seconds=length,
        samples_per_client=setting.samples_per_client,
        local_epochs=setting.local_epochs,
        clients=total,
        eligible_clients=eligible,
        excluded_clients=total - eligible,
        clients_per_round=wanted,
        over_commit=over_commit,
        sampled_per_round=sample_size,
        deadline_sec=deadline,
        update_bytes=update_bytes,
        rounds=setting.rounds,
        trials=trials,
        seed=seed,
        round_sec_mean=float(per_round.mean()),
        round_sec_p5=float(np.percentile(per_round, 5)),
        round_sec_p95=float(np.percentile(per_round, 95)),
        days_mean=float(days.mean()),
        days_p5=float(np.percentile(days, 5)),
        days_p95=float(np.percentile(days, 95)),
        updates_per_round=float(tally.accepted.sum() / played),
        lost_updates_per_round=float(tally.lost.sum() / played),
        lost_updates_total=float(tally.lost.sum() / trials),
        short_round_share=tally.short_rounds / played,
        empty_round_share=tally.empty_rounds / played,
        energy_j_per_round=float(sum(energy) / played) if energy else None,
    )


def _device_rows(
    fleet: list[FleetGroup],
    costs: dict[str, _DeviceCost],
    times: list[float],
    update_bytes: Optional[int],
    setting: FlSetting,
    tally: _Tally,
    trials: int,
) -> list[FleetDevice]:
    played = setting.rounds * trials
    devices = []
    for i, group in enumerate(fleet):
        cost = costs[group.device]
        devices.append(
            FleetDevice(
                line=group.line,
                device=group.device,
                clients=group.count,
                availability=group.availability,
                uplink_mbps=group.uplink_mbps,
                downlink_mbps=group.downlink_mbps,
                excluded=cost.excluded,
                sec_per_batch=cost.sec_per_batch,
                compute_sec=cost.compute_sec,
                communication_sec=None if cost.excluded else _communication_sec(group, setting, update_bytes),
                client_round_sec=None if cost.excluded else times[i],
                energy_j_per_client_round=cost.energy_j,
                sampled_per_round=float(tally.sampled[i] / played),
                updates_per_round=float(tally.accepted[i] / played),
                lost_updates_per_round=float(tally.lost[i] / played),
                slowest_share=float(tally.bound[i] / played),
            )
        )
    return devices


def _notes(
    fleet: list[FleetGroup], costs: dict[str, _DeviceCost], figures: FleetFigures, setting: FlSetting
) -> list[str]:
    """What the reader must know to trust the numbers: what was left out and what was assumed."""
    notes = []
    if figures.update_bytes is None:
        notes.append("no communication cost: the fleet file gives no uplink_mbps / downlink_mbps (nor --bandwidth)")
    else:
        notes.append(
            f"communication: one model copy = {figures.update_bytes / 1e6:.1f} MB (parameters x 4 bytes, "
            "FP32 updates) downloaded and uploaded per round; a missing link direction costs nothing"
        )
    for name in dict.fromkeys(g.device for g in fleet):
        if costs[name].excluded:
            clients = sum(g.count for g in fleet if g.device == name)
            notes.append(f"{name}: {clients} client(s) never sampled ({costs[name].excluded})")
    if figures.clients_per_round > figures.eligible_clients:
        notes.append(
            f"K = {figures.clients_per_round} but only {figures.eligible_clients} clients can train: "
            "every round aggregates fewer than K updates"
        )
    unmeasured = sorted({g.device for g in fleet if not costs[g.device].excluded and costs[g.device].energy_j is None})
    if figures.energy_j_per_round is not None and unmeasured:
        notes.append(f"energy leaves out {', '.join(unmeasured)} (no energy_j_per_batch measured)")
    if figures.empty_round_share:
        notes.append(
            f"{figures.empty_round_share:.1%} of rounds found no reachable client "
            + ("(they last until the deadline)" if figures.deadline_sec else "(counted as taking no time)")
        )
    return notes
