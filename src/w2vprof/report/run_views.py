"""What the commands that measure or write print when they are done: `w2vprof profile`'s table of one measured
configuration (with the lines on its layers), and `w2vprof partition`'s speech per client."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from w2vprof.records import DEFAULT_OBJECTIVE, LayerRecord, ResultRecord, objective_of
from w2vprof.report.render import Column, Table, headings
from w2vprof.report.views import View
from w2vprof.workload.partition import Partition

__all__ = ["profile_view", "profile_table", "profile_notes", "partition_view"]


# -- profile -----------------------------------------------------------------------------------------------
def profile_view(record: ResultRecord, layers: Sequence[LayerRecord]) -> View:
    """The measured configuration as measure -> value, then where its activation memory and time go."""
    return View(tables=[profile_table(record)], notes=profile_notes(record, layers), records=[record])


def _bytes_text(value: Optional[float]) -> str:
    return "-" if value is None else f"{value / 1e9:.2f} GB" if value >= 1e9 else f"{value / 1e6:.1f} MB"


def _flops_text(value: Optional[float]) -> str:
    return "-" if value is None else f"{value / 1e9:.1f} GFLOP" if value >= 1e9 else f"{value / 1e6:.1f} MFLOP"


def _time_rows(r: ResultRecord) -> list[list[str]]:
    """Compilation, and the step's seconds (median, spread, per sequence) where the steps were timed."""
    rows = []
    if r.compile_sec is not None:
        rows.append(["compilation (not in the timed steps)", f"{r.compile_sec:.1f} s"])
    if r.sec_per_batch_median is not None:
        spread = f"{r.sec_per_batch_mean:.3f} / {r.sec_per_batch_std:.3f} / {r.sec_per_batch_iqr:.3f} s"
        rows += [
            ["seconds per batch (median)", f"{r.sec_per_batch_median:.3f} s"],
            ["  mean / std / IQR", spread],
            ["seconds per sequence", f"{r.sec_per_sequence:.3f} s"],
        ]
    return rows


def profile_table(record: ResultRecord) -> Table:
    """One profiled configuration as measure -> value: time, FLOPs, memory and energy, with units in the cells."""
    r = record
    rows = [["status", r.status + (f" ({r.error})" if r.error else "")]]
    if objective_of(r) != DEFAULT_OBJECTIVE:  # as a recipe is shown: only when not the default (pretraining)
        rows.append(["objective", objective_of(r)])
    if r.recipe != "default":
        rows += [
            ["recipe", r.recipe],
            ["recomputed forward (checkpointing)", _flops_text(r.recompute_flops)],
            ["trainable parameters", "-" if r.trainable_params is None else f"{r.trainable_params:,}"],
        ]
    rows += _time_rows(r)
    flops = (_flops_text(r.fwd_flops), _flops_text(r.bwd_flops), _flops_text(r.optim_flops))
    rows.append(["forward / backward / optimizer", " / ".join(flops)])
    if r.achieved_flops_per_sec:
        rows.append(["achieved", f"{r.achieved_flops_per_sec / 1e9:.1f} GFLOP/s"])
    state = (_bytes_text(r.param_bytes), _bytes_text(r.grad_bytes), _bytes_text(r.optim_state_bytes))
    rows += [
        ["activations saved for backward", _bytes_text(r.act_mem_bytes)],
        ["params / grads / optimizer state", " / ".join(state)],
        [f"peak memory ({r.peak_mem_source or 'n/a'})", _bytes_text(r.peak_mem_bytes)],
    ]
    if r.energy_source:
        rows.append([f"energy per batch ({r.energy_source})", f"{r.energy_j_per_batch:.1f} J"])
    if r.notes:
        rows.append(["notes", r.notes])
    return Table(
        title=f"{r.model} | batch {r.batch} | {r.seconds:g} s | {r.precision} | {r.device}",
        columns=["measure", "value"],
        rows=rows,
    )


def profile_notes(record: ResultRecord, layers: Sequence[LayerRecord]) -> list[str]:
    """The lines under a profile's table: the layer saving the most for backward, and where the time goes."""
    if not layers:
        return []
    from w2vprof.measure.diagnostics import time_summary_line

    top = max(layers, key=lambda row: row.act_mem_bytes)
    notes = [f"Largest activation memory: {top.layer} ({top.act_mem_bytes / 1e6:.0f} MB); per-layer rows in layers.csv"]
    line = time_summary_line(record, list(layers))
    return notes + [line] if line else notes


# -- partition ---------------------------------------------------------------------------------------------
def partition_view(result: Partition, out: Path) -> View:
    """Speakers, utterances and hours of speech per client (a total row in bold), then where the files are."""
    rows = []
    for c in result.clients:
        mean = c.seconds / c.utterances if c.utterances else 0.0
        rows.append([str(c.client), str(len(c.speakers)), str(c.utterances), f"{c.hours:.4f}", f"{mean:.2f}"])
    total_sec = sum(c.seconds for c in result.clients)
    utterances = sum(c.utterances for c in result.clients)
    rows.append(
        [
            "total",
            str(sum(len(c.speakers) for c in result.clients)),
            str(utterances),
            f"{total_sec / 3600:.4f}",
            f"{total_sec / utterances:.2f}" if utterances else "-",
        ]
    )
    table = Table(
        title=f"{result.source.name}: {len(result.clients)} clients by speaker",
        columns=headings("client", "speakers", "utterances", Column("speech", "h"), Column("mean utt", "s")),
        rows=rows,
        caption=f"speech per client within {100 * result.spread:.1f} % of the mean; no speaker in two clients",
        emphasis=frozenset({len(rows) - 1}),
    )
    first, last = result.clients[0].manifest, result.clients[-1].manifest
    return View(tables=[table], notes=[f"Client manifests: {out}/{first} .. {last}; summary: {out / 'summary.csv'}"])
