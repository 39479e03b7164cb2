"""Fleets: the view of `w2vprof fl-estimate --fleet` (the fleet's round time and days, mean and 90 % interval,
and one line per fleet line: its clients' cost and how they fared), and `fleet_mix_table`, a simulated fleet
run's days to train per fleet mix (its fleet.json, `fl simulate --fleet`; shown by `fl report` and the report)."""

from __future__ import annotations

from typing import Optional

from w2vprof.analysis.fleet import FleetEstimate
from w2vprof.analysis.fleet_io import fleet_records
from w2vprof.fl.records import FleetRun
from w2vprof.report.render import Column, Table, headings
from w2vprof.report.views import View

__all__ = ["fleet_view", "fleet_mix_table"]


def _cell(value: Optional[float], spec: str, scale: float = 1.0) -> str:
    return "" if value is None else format(value / scale, spec)


def fleet_view(estimate: FleetEstimate) -> View:
    """The fleet's figures, then its lines, then what was assumed or left out; one CSV line per fleet line."""
    return View(
        tables=[_summary_table(estimate), _devices_table(estimate)],
        notes=estimate.notes,
        records=fleet_records(estimate),
    )


def _summary_table(estimate: FleetEstimate) -> Table:
    f = estimate.figures
    deadline = f"deadline {f.deadline_sec:,.0f} s" if f.deadline_sec is not None else "no deadline"
    energy = (
        ""
        if f.energy_j_per_round is None
        else f" Energy: {f.energy_j_per_round / 3.6e6:,.2f} kWh per round (devices with J per batch measured)."
    )
    return Table(
        title=(
            f"Federated pretraining on a fleet: {f.clients} clients ({f.eligible_clients} can train), "
            f"K = {f.clients_per_round} updates per round of {f.sampled_per_round} sampled (over-commit "
            f"{f.over_commit:g}), {deadline}, {f.rounds} rounds; {f.model} {f.precision}, batch {f.batch}, "
            f"{f.seconds:g} s utterances, {f.samples_per_client:,} samples per client, {f.local_epochs:g} local "
            "epoch(s)"
        ),
        columns=["", "mean", "5 %", "95 %"],
        rows=[
            ["round (s)"] + [f"{v:,.0f}" for v in (f.round_sec_mean, f.round_sec_p5, f.round_sec_p95)],
            ["round (h)"] + [f"{v / 3600:,.2f}" for v in (f.round_sec_mean, f.round_sec_p5, f.round_sec_p95)],
            [f"{f.rounds} rounds (days)"] + [f"{v:,.1f}" for v in (f.days_mean, f.days_p5, f.days_p95)],
        ],
        caption=(
            f"Monte Carlo over {f.trials} trainings (seed {f.seed}); 5 % / 95 %: the 90 % interval. "
            f"Per round: {f.updates_per_round:.1f} updates aggregated, {f.lost_updates_per_round:.1f} lost to "
            f"the deadline ({f.lost_updates_total:,.0f} over the training); {f.short_round_share:.0%} of rounds "
            f"aggregated fewer than K.{energy}"
        ),
    )


def _devices_table(estimate: FleetEstimate) -> Table:
    body = []
    for d in estimate.devices:
        body.append(
            [
                str(d.line),
                d.device,
                str(d.clients),
                f"{d.availability:g}",
                _cell(d.sec_per_batch, ".2f"),
                _cell(d.compute_sec, ".2f", 3600),
                _cell(d.communication_sec, ".3f", 3600),
                _cell(d.client_round_sec, ".2f", 3600),
                f"{d.sampled_per_round:.1f}",
                f"{d.updates_per_round:.1f}",
                f"{d.lost_updates_per_round:.1f}",
                f"{d.slowest_share:.0%}",
                _cell(d.energy_j_per_client_round, ".3f", 3.6e6),
                d.excluded,
            ]
        )
    return Table(
        title="Fleet lines: one client's round, and the clients per round (means over all simulated rounds)",
        columns=headings(
            "line",
            "device",
            "clients",
            "availability",
            "s/batch",
            Column("compute", "h"),
            Column("transfer", "h"),
            Column("update in", "h"),
            "sampled",
            "aggregated",
            "lost",
            "slowest",
            Column("energy", "kWh"),
            "excluded",
        ),
        rows=body,
        caption=(
            "update in: compute + transfer, when the client's update reaches the server. slowest: share of "
            "rounds whose end this line's client decided (the K-th arrival, or the one the deadline cut). "
            "energy: one client's local training per round. excluded: never sampled (oom, unsupported, or "
            "feasibility's memory fit)."
        ),
    )


def _days(value: Optional[float]) -> str:
    """Days as a reader wants them: 12.35, and a short test run's 4.6e-05 still shows its size."""
    if value is None:
        return ""
    return f"{value:,.2f}" if value >= 0.01 else f"{value:.2g}"


def fleet_mix_table(fleet: FleetRun) -> Table:
    """Days to the run's rounds for its whole fleet and for each device type's clients alone (a FleetRun)."""
    deadline = "no deadline" if fleet.deadline_sec is None else f"deadline {fleet.deadline_sec:g} s"
    rows = [
        [
            "whole fleet" if mix.mix == "fleet" else f"{mix.mix} only",
            str(mix.clients),
            str(mix.clients_per_round),
            _cell(mix.round_sec_mean, ",.1f"),
            _days(mix.days_mean),
            _days(mix.days_p5),
            _days(mix.days_p95),
            _cell(mix.updates_per_round, ".1f"),
            mix.note,
        ]
        for mix in fleet.mixes
    ]
    return Table(
        title=(
            f"Days to {fleet.rounds} rounds per fleet mix (fl-estimate --fleet at the run's configuration, rows at "
            f"{fleet.seconds:g} s, {deadline})"
        ),
        columns=headings(
            "fleet mix", "clients", "K", Column("round", "s"), "days", "5 %", "95 %", "aggregated", "note"
        ),
        rows=rows,
        caption=(
            "K: updates a round waits for, the run's share of clients per round of each mix. aggregated: updates "
            "per round that enter the aggregate (0: the deadline cuts every one). 5 % / 95 %: the Monte Carlo's "
            "90 % interval."
        ),
        align="lrrrrrrrl",
    )
