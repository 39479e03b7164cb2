"""`fl simulate --fleet`: every simulated client stands for a device of a fleet, and each round also gets the time
it would take on that fleet (virtual time), from the client's measured device and the local steps it really ran.

Which device a client stands for: the fleet file's lines are dealt out in proportion to their counts (each next
client takes the line furthest below its share; a run with as many clients as the fleet has takes exactly its
counts), then shuffled with the run's seed, so partition 0 is not always the first line. A client's virtual seconds
are its device's measured seconds per batch (analysis.fleet_pricing.price_fleet: fl-estimate --fleet's lookup)
x the optimizer steps it ran + its model download and update upload over its line's links. Its update is left out
of the aggregate (weight 0) when its device cannot hold or run the configuration, when it is unreachable this
round (drawn with its line's availability, seeded by the run's seed, the round and the partition), or when its
virtual seconds pass the deadline. A round's virtual time is the slowest client that made it, or the deadline
when the deadline cut someone (a synchronous round waits until then).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from w2vprof.errors import BadInput, SettingError
from w2vprof.fl.records import FleetLineRecord, FleetMixDays, FleetRun
from w2vprof.fl.settings import FlSettings

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.analysis.fl_estimate import FlSetting
    from w2vprof.analysis.fleet_pricing import FleetGroup
    from w2vprof.records import ResultRecord

__all__ = [
    "FleetOptions",
    "fleet_options",
    "FleetInputs",
    "ClientVerdict",
    "read_fleet_inputs",
    "assign_lines",
    "plan_fleet",
    "estimate_mixes",
    "judge_client",
    "round_virtual_sec",
    "mean_partition_size",
]

#: The mix of every fleet line in fleet.json's days-to-train table (the others are named by their device).
WHOLE_FLEET = "fleet"


@dataclass(frozen=True)
class FleetOptions:
    """What `fl simulate --fleet` adds to a run; errors name these settings (the CLI's flags carry their names)."""

    fleet: str  # the fleet CSV (device,count[,availability,uplink_mbps,downlink_mbps])
    results: tuple[str, ...]  # results CSVs holding the fleet's devices
    deadline: Optional[float] = None  # s: a client whose virtual seconds pass it is cut from the round
    seconds: Optional[float] = None  # utterance length whose rows price a batch (None: fl-estimate's choice)


@dataclass
class FleetInputs:
    """The files of FleetOptions, read and checked before any training starts."""

    options: FleetOptions
    rows: list[ResultRecord]
    groups: list[FleetGroup]


@dataclass(frozen=True)
class ClientVerdict:
    fleet_device: str
    virtual_sec: Optional[float]  # None: it never trained there (memory, unsupported, unreachable)
    dropped: str  # a DROP_CAUSES entry, or '' when its update counts


def fleet_options(
    fleet: Optional[str], results: Sequence[str], deadline: Optional[float], seconds: Optional[float]
) -> Optional[FleetOptions]:
    """The fleet settings of a run (None without a fleet); each of the others alone is refused (it would be ignored)."""
    if fleet is None:
        for name, value in (("results", results), ("deadline", deadline), ("seconds", seconds)):
            if value:
                raise SettingError(name, "is only for a fleet run: give {fleet} too", ("fleet",))
        return None
    return FleetOptions(fleet, tuple(results), deadline, seconds)


def read_fleet_inputs(options: FleetOptions) -> FleetInputs:
    """The results files and the fleet file (its devices must be devices of the results)."""
    from w2vprof.analysis.data import load_results
    from w2vprof.analysis.fleet_io import read_fleet

    for name in ("deadline", "seconds"):
        value = getattr(options, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise SettingError(name, f"must be a positive number of seconds, got {value:g}")
    if not options.results:
        raise SettingError(
            "results", "must be given with {fleet}: the results CSVs that measured its devices", ("fleet",)
        )
    rows = load_results([Path(path) for path in options.results])
    return FleetInputs(options, rows, read_fleet(Path(options.fleet), rows))


def assign_lines(counts: Sequence[int], clients: int, seed: int) -> list[int]:
    """The fleet line each of `clients` partitions stands for: lines in proportion to `counts`, shuffled by `seed`.

    Each next client takes the line furthest below its share of the clients so far (ties: the earlier line), so no
    line ever gets more than its share rounded up, and `clients == sum(counts)` gives exactly the counts.
    """
    total = sum(counts)
    taken = [0] * len(counts)
    lines = []
    for dealt in range(1, clients + 1):
        line = max(range(len(counts)), key=lambda g: (counts[g] * dealt / total - taken[g], -g))
        taken[line] += 1
        lines.append(line)
    random.Random(seed).shuffle(lines)
    return lines


def _pricing_setting(settings: FlSettings, inputs: FleetInputs, samples_per_client: int) -> FlSetting:
    from w2vprof.analysis.fl_estimate import FlSetting

    return FlSetting(
        clients=sum(g.count for g in inputs.groups),
        samples_per_client=samples_per_client,
        batch=settings.batch,
        rounds=settings.rounds,
        local_epochs=float(settings.local_epochs),
        model=settings.model,
        precision=settings.precision,
        seconds=inputs.options.seconds,
    )


def plan_fleet(inputs: FleetInputs, settings: FlSettings) -> FleetRun:
    """The fleet priced at the run's configuration and a line for each of the run's clients (no mixes yet)."""
    from w2vprof.analysis.fleet_pricing import price_fleet

    prices = price_fleet(inputs.rows, inputs.groups, _pricing_setting(settings, inputs, 1))
    if all(price.excluded for price in prices.lines):
        reasons = "; ".join(f"{p.group.device}: {p.excluded}" for p in prices.lines)
        raise BadInput(
            f"no device of the fleet can train {settings.model} {settings.precision} batch {settings.batch} at "
            f"{prices.seconds:g} s ({reasons}): every update would be left out"
        )
    lines = tuple(
        FleetLineRecord(
            line=p.group.line,
            device=p.group.device,
            count=p.group.count,
            availability=p.group.availability,
            excluded=p.excluded,
            sec_per_batch=p.sec_per_batch,
            communication_sec=p.communication_sec,
        )
        for p in prices.lines
    )
    return FleetRun(
        fleet_file=str(Path(inputs.options.fleet).resolve()),
        seconds=prices.seconds,
        deadline_sec=inputs.options.deadline,
        update_bytes=prices.update_bytes,
        rounds=settings.rounds,
        lines=lines,
        assignment=tuple(assign_lines([g.count for g in inputs.groups], settings.clients, settings.seed)),
    )


def estimate_mixes(fleet: FleetRun, inputs: FleetInputs, settings: FlSettings, samples_per_client: int) -> FleetRun:
    """`fleet` with fl-estimate --fleet's days to the run's rounds for the whole fleet and for each device type's
    lines alone, at the run's share of clients per round (K scaled to each mix) and its deadline."""
    setting = _pricing_setting(settings, inputs, max(1, samples_per_client))
    share = settings.sampled_per_round / settings.clients
    mixes = [_mix_days(WHOLE_FLEET, inputs.groups, inputs.rows, setting, share, fleet.deadline_sec, settings.seed)]
    for device in dict.fromkeys(g.device for g in inputs.groups):
        lines = [g for g in inputs.groups if g.device == device]
        mixes.append(_mix_days(device, lines, inputs.rows, setting, share, fleet.deadline_sec, settings.seed))
    return replace(fleet, mixes=tuple(mixes))


def _mix_days(
    name: str,
    groups: list[FleetGroup],
    rows: list[ResultRecord],
    setting: FlSetting,
    share: float,
    deadline: Optional[float],
    seed: int,
) -> FleetMixDays:
    from w2vprof.analysis.fleet import fl_estimate_fleet

    clients = sum(g.count for g in groups)
    wanted = min(clients, max(1, round(share * clients)))
    try:
        figures = fl_estimate_fleet(rows, groups, setting, wanted, deadline, seed=seed).figures
    except BadInput as exc:  # none of the mix's clients can train the configuration
        return FleetMixDays(name, clients, wanted, None, None, None, None, None, str(exc))
    return FleetMixDays(
        name,
        clients,
        wanted,
        figures.round_sec_mean,
        figures.days_mean,
        figures.days_p5,
        figures.days_p95,
        figures.updates_per_round,
    )


def judge_client(fleet: FleetRun, server_round: int, partition_id: int, steps: int, seed: int) -> ClientVerdict:
    """A client's virtual seconds in this round and why (if at all) its update is left out of the aggregate."""
    line = fleet.line_of(partition_id)
    if line.excluded:
        return ClientVerdict(line.device, None, "unsupported" if line.excluded == "unsupported" else "memory")
    reachable = random.Random(f"{seed}:{server_round}:{partition_id}").random() < line.availability
    if not reachable:
        return ClientVerdict(line.device, None, "unavailable")
    virtual = (line.sec_per_batch or 0.0) * steps + (line.communication_sec or 0.0)
    late = fleet.deadline_sec is not None and virtual > fleet.deadline_sec
    return ClientVerdict(line.device, virtual, "deadline" if late else "")


def round_virtual_sec(fleet: FleetRun, verdicts: Sequence[ClientVerdict]) -> Optional[float]:
    """The deadline when it cut someone (the round waited for them until then), else the slowest client that made
    it; None when no client trained at all (nothing to wait for)."""
    if any(v.dropped == "deadline" for v in verdicts):
        return fleet.deadline_sec
    made_it = [v.virtual_sec for v in verdicts if not v.dropped and v.virtual_sec is not None]
    return max(made_it) if made_it else None


def mean_partition_size(settings: FlSettings) -> int:
    """Utterances per client, the mean over the run's partitions: the fleet estimate's samples per client."""
    from w2vprof.fl.data import client_entries
    from w2vprof.workload.audio import find_audio_files
    from w2vprof.workload.manifest import read_manifest

    entries = client_entries(Path(settings.partitions))[: settings.clients]
    sizes = [len(find_audio_files(e)) if e.is_dir() else len(read_manifest(e).rows) for e in entries]
    return max(1, round(sum(sizes) / len(sizes)))
