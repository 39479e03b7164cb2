"""Federated pretraining on a mixed fleet: each client is a measured device, a synchronous round waits for the
K-th update (or a deadline), clients that cannot hold the model never join.

What one client of each fleet line costs per round (its device's seconds per batch x local steps, plus a model
download and upload over its own links) is w2vprof.analysis.fleet_pricing's `LineCost`. Which clients train in a
round is drawn at random (who is reachable, who is sampled), so the round time is a Monte Carlo estimate with a
seed: the same seed gives the same numbers. The fleet file is read by `w2vprof.analysis.fleet_io`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from w2vprof.analysis.fl_estimate import FlSetting
from w2vprof.analysis.fleet_pricing import FleetGroup, FleetPrices, LineCost, unlinked_prices, with_links
from w2vprof.devices.profiles import DeviceProfile
from w2vprof.errors import BadInput, SettingError
from w2vprof.records import ResultRecord

__all__ = [
    "FleetDevice",
    "FleetFigures",
    "FleetEstimate",
    "DEFAULT_TRIALS",
    "fl_estimate_fleet",
]

#: Monte Carlo repetitions of the whole training (R rounds each): enough for a stable 5th-95th percentile.
DEFAULT_TRIALS = 200


@dataclass
class FleetDevice:
    """One fleet line as `fl-estimate --fleet` reports it: its clients' cost per round (a LineCost's figures) and
    how they fared in the simulated rounds. The row type of the CSV and JSON output (fleet_io.FleetRow)."""

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
    prices = unlinked_prices(rows, fleet, setting, profiles)
    eligible = prices.eligible_clients()
    if not eligible:
        reasons = "; ".join(f"{name}: {why}" for name, why in prices.exclusions().items())
        raise BadInput(
            f"no client of the fleet can train {setting.model} {setting.precision} batch {setting.batch} "
            f"at {prices.seconds:g} s ({reasons})"
        )
    total = sum(g.count for g in fleet)
    wanted = clients_per_round or setting.clients_per_round or eligible
    if not 0 < wanted <= total:
        raise SettingError("clients_per_round", f"must be between 1 and the fleet's {total} clients, got {wanted}")
    sample_size = min(math.ceil(round(wanted * over_commit, 9)), eligible)
    prices = with_links(prices, fleet, setting)
    rounds_run = _Rounds(wanted, sample_size, deadline_s, setting.rounds, trials, seed)
    tally = _simulate(prices.lines, rounds_run)
    figures = _figures(setting, prices, tally, rounds_run, over_commit)
    devices = [_device_row(line, tally, i, setting.rounds * trials) for i, line in enumerate(prices.lines)]
    return FleetEstimate(figures, devices, _notes(prices, figures))


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


@dataclass(frozen=True)
class _Rounds:
    """The round model's settings: K, how many are sampled, the deadline, R rounds x `trials` trainings."""

    wanted: int  # K: updates a round waits for
    sample_size: int  # ceil(K x over_commit), at most the eligible clients
    deadline: Optional[float]
    rounds: int
    trials: int
    seed: int


def _simulate(lines: list[LineCost], model: _Rounds) -> _Tally:
    """R rounds x `trials` independent trainings, vectorised over the trials."""
    import numpy as np

    rng = np.random.default_rng(model.seed)
    trials, groups = model.trials, len(lines)
    counts = np.array([0 if line.excluded else line.group.count for line in lines])
    availability = np.array([line.group.availability for line in lines])
    secs = np.array([line.client_round_sec or 0.0 for line in lines])  # an excluded line is never sampled
    order = np.argsort(secs, kind="stable")  # fastest first: the K-th arrival is a cumulative count
    late = secs > model.deadline if model.deadline is not None else np.zeros(groups, dtype=bool)
    tally = _Tally(np.zeros(trials), np.zeros(groups), np.zeros(groups), np.zeros(groups), np.zeros(groups), 0, 0)
    for _ in range(model.rounds):
        available = rng.binomial(counts, availability, size=(trials, groups))
        draw = np.minimum(model.sample_size, available.sum(axis=1))
        sampled = _sample_without_replacement(rng, available, draw)[:, order]
        needed = np.minimum(model.wanted, draw)
        cumulative = sampled.cumsum(axis=1)
        bound = order[(cumulative >= needed[:, None]).argmax(axis=1)]  # the group whose arrival ends the round
        empty = draw == 0
        cut = late[bound] & ~empty
        round_sec = np.where(empty | cut, model.deadline or 0.0, secs[bound])
        accepted = np.clip(needed[:, None] - (cumulative - sampled), 0, sampled)
        accepted = np.where(late[order][None, :] & cut[:, None], 0, accepted)
        lost = np.where(late[order][None, :] & cut[:, None], sampled, 0)
        tally.trial_sec += round_sec
        tally.sampled[order] += sampled.sum(axis=0)
        tally.accepted[order] += accepted.sum(axis=0)
        tally.lost[order] += lost.sum(axis=0)
        np.add.at(tally.bound, bound[~empty], 1)
        tally.short_rounds += int((accepted.sum(axis=1) < model.wanted).sum())
        tally.empty_rounds += int(empty.sum())
    return tally


def _figures(
    setting: FlSetting, prices: FleetPrices, tally: _Tally, model: _Rounds, over_commit: float
) -> FleetFigures:
    import numpy as np

    played = setting.rounds * model.trials
    per_round = tally.trial_sec / setting.rounds
    days = tally.trial_sec / 86_400
    energy = [tally.sampled[i] * line.energy_j for i, line in enumerate(prices.lines) if line.energy_j is not None]
    total = sum(line.group.count for line in prices.lines)
    eligible = prices.eligible_clients()
    return FleetFigures(
        model=setting.model,
        precision=setting.precision,
        batch=setting.batch,
        seconds=prices.seconds,
        samples_per_client=setting.samples_per_client,
        local_epochs=setting.local_epochs,
        clients=total,
        eligible_clients=eligible,
        excluded_clients=total - eligible,
        clients_per_round=model.wanted,
        over_commit=over_commit,
        sampled_per_round=model.sample_size,
        deadline_sec=model.deadline,
        update_bytes=prices.update_bytes,
        rounds=setting.rounds,
        trials=model.trials,
        seed=model.seed,
        round_sec_mean=float(per_round.mean()),
        round_sec_p5=float(np.percentile(per_round, 5)),
        round_sec_p95=float(np.percentile(per_round, 95)),
        days_mean=float(days.mean()),
        days_p5=float(np.percentile(days, 5)),
        days_p95=float(np.percentile(days, 95)),
        updates_per_round=float(tally.accepted.sum() / played),
        lost_updates_per_round=float(tally.lost.sum() / played),
        lost_updates_total=float(tally.lost.sum() / model.trials),
        short_round_share=tally.short_rounds / played,
        empty_round_share=tally.empty_rounds / played,
        energy_j_per_round=float(sum(energy) / played) if energy else None,
    )


def _device_row(line: LineCost, tally: _Tally, index: int, played: int) -> FleetDevice:
    """The report row of one fleet line: its cost, then its share of the simulated rounds (means per round)."""
    group = line.group
    return FleetDevice(
        line=group.line,
        device=group.device,
        clients=group.count,
        availability=group.availability,
        uplink_mbps=group.uplink_mbps,
        downlink_mbps=group.downlink_mbps,
        excluded=line.excluded,
        sec_per_batch=line.sec_per_batch,
        compute_sec=line.compute_sec,
        communication_sec=line.communication_sec,
        client_round_sec=line.client_round_sec,
        energy_j_per_client_round=line.energy_j,
        sampled_per_round=float(tally.sampled[index] / played),
        updates_per_round=float(tally.accepted[index] / played),
        lost_updates_per_round=float(tally.lost[index] / played),
        slowest_share=float(tally.bound[index] / played),
    )


def _notes(prices: FleetPrices, figures: FleetFigures) -> list[str]:
    """What the reader must know to trust the numbers: what was left out and what was assumed."""
    notes = []
    if figures.update_bytes is None:
        notes.append("no communication cost: the fleet file gives no uplink_mbps / downlink_mbps (nor --bandwidth)")
    else:
        notes.append(
            f"communication: one model copy = {figures.update_bytes / 1e6:.1f} MB (parameters x 4 bytes, "
            "FP32 updates) downloaded and uploaded per round; a missing link direction costs nothing"
        )
    for name, why in prices.exclusions().items():
        clients = sum(line.group.count for line in prices.lines if line.group.device == name)
        notes.append(f"{name}: {clients} client(s) never sampled ({why})")
    if figures.clients_per_round > figures.eligible_clients:
        notes.append(
            f"K = {figures.clients_per_round} but only {figures.eligible_clients} clients can train: "
            "every round aggregates fewer than K updates"
        )
    unmeasured = sorted({line.group.device for line in prices.lines if not line.excluded and line.energy_j is None})
    if figures.energy_j_per_round is not None and unmeasured:
        notes.append(f"energy leaves out {', '.join(unmeasured)} (no energy_j_per_batch measured)")
    if figures.empty_round_share:
        notes.append(
            f"{figures.empty_round_share:.1%} of rounds found no reachable client "
            + ("(they last until the deadline)" if figures.deadline_sec else "(counted as taking no time)")
        )
    return notes
