"""The tables people read, built from records: Table 1 and Table 2 of the paper, the results and the
environment of a report, and the views of compare, feasibility, fl-estimate and forecast.

Each function returns `Table`s (strings with units in the column names) or plain text; render.py turns a
Table into CSV, Markdown, LaTeX, HTML or a terminal drawing.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from typing import Optional, Sequence

from w2vprof.analysis.data import device_label, latest_by_config, sec_per_batch
from w2vprof.records import DEFAULT_RECIPE, length_key, recipe_of
from w2vprof.report.render import Table

__all__ = [
    "table1",
    "table2",
    "results_table",
    "environment_table",
    "COMPARE_COLUMNS",
    "comparison_csv",
    "comparison_json",
    "comparison_tables",
    "feasibility_tables",
    "fl_estimate_table",
    "forecast_text",
    "profile_table",
    "profile_notes",
]

MODEL_ORDER = ("tiny", "base", "large")


def _models(names: Sequence[str]) -> list[str]:
    present = list(dict.fromkeys(names))
    return [m for m in MODEL_ORDER if m in present] + [m for m in present if m not in MODEL_ORDER]


def _status_cell(status: str) -> str:
    # The paper's notation: OOM for out of memory, "-" where the device has no mixed precision.
    return {"oom": "OOM", "unsupported": "-"}.get(status, status)


def _gb(value: Optional[float]) -> str:
    return "" if value is None else f"{value / 1e9:.2f}"


# -- the paper's tables ------------------------------------------------------------------------------------
def table2(rows: Sequence, seconds: float) -> Table:
    """Table 2 style: rows device x batch, columns model x {FP32, Mixed}; cells seconds per batch, OOM or -."""
    latest = latest_by_config(r for r in rows if length_key(r.seconds) == length_key(seconds))
    models = _models([k[1] for k in latest])
    devices = list(dict.fromkeys(k[0] for k in latest))
    body = []
    for device in devices:
        for batch in sorted({k[2] for k in latest if k[0] == device}):
            row = [device, str(batch)]
            for model in models:
                for precision in ("fp32", "mixed"):
                    record = latest.get((device, model, batch, length_key(seconds), precision))
                    if record is None:
                        row.append("-")
                    elif record.status == "ok" and sec_per_batch(record) is not None:
                        row.append(f"{sec_per_batch(record):.2f}")
                    else:
                        row.append(_status_cell(record.status))
            body.append(row)
    return Table(
        title=f"Training time (seconds per batch), {seconds:g} s utterances",
        columns=["device", "batch"] + [f"{m} {p}" for m in models for p in ("FP32", "Mixed")],
        rows=body,
        caption="Median seconds per training step (forward + backward + optimizer); the paper's rows are its "
        "averages. OOM: out of memory; -: not measured, or no mixed precision on the device.",
    )


def table1(summary_rows: Sequence) -> Table:
    """Table 1 style from `w2vprof summary --format csv` rows: parameters (M) and GFLOPs per module."""
    groups = list(dict.fromkeys((r.model, r.seconds, r.batch) for r in summary_rows))
    per_model = {g[0] for g in groups}
    # A model measured at one input only is labelled by its name; otherwise the input goes in the label.
    label = {g: g[0] if len(per_model) == len(groups) else f"{g[0]} {g[1]:g} s x{g[2]}" for g in groups}
    modules = list(dict.fromkeys(r.module for r in summary_rows))
    by_key = {(r.model, r.seconds, r.batch, r.module): r for r in summary_rows}
    body = []
    for module in modules:
        row = [module]
        row += [f"{by_key[g + (module,)].params / 1e6:.2f}" if g + (module,) in by_key else "" for g in groups]
        row += [f"{by_key[g + (module,)].inference_flops / 1e9:.2f}" if g + (module,) in by_key else "" for g in groups]
        body.append(row)
    inputs = sorted({(g[1], g[2]) for g in groups})
    return Table(
        title="Parameters and inference FLOPs per module (" + ", ".join(f"{s:g} s, batch {b}" for s, b in inputs) + ")",
        columns=["module"] + [f"{label[g]} params (M)" for g in groups] + [f"{label[g]} GFLOPs" for g in groups],
        rows=body,
        caption="FLOPs = 2 per multiply-add, one eval-mode forward pass (w2vprof summary).",
    )


# -- report tables ---------------------------------------------------------------------------------------
def results_table(rows: Sequence) -> Table:
    """Every configuration of the inputs, one line each (the last row of a configuration that was rerun); a recipe
    column when any row trained with a recipe other than the default."""
    latest = latest_by_config(rows, recipes=True)
    with_recipes = any(key[-1] != DEFAULT_RECIPE for key in latest)
    body = []
    for record in sorted(
        latest.values(),
        key=lambda r: (
            device_label(r),
            _models([r.model, *MODEL_ORDER]).index(r.model),
            r.precision,
            r.batch,
            r.seconds,
        ),
    ):
        time = sec_per_batch(record)
        peak = _gb(record.peak_mem_bytes)
        body.append(
            [
                device_label(record),
                record.model,
                str(record.batch),
                f"{record.seconds:g}",
                record.precision,
                record.status,
                "" if time is None else f"{time:.3f}",
                "" if time is None else f"{time / record.batch:.3f}",
                peak + (f" ({record.peak_mem_source})" if peak and record.peak_mem_source else ""),
                _gb(record.act_mem_bytes),
                "" if record.train_flops is None else f"{record.train_flops / 1e9:.1f}",
                record.source,
                record.error or record.skipped_because,
            ]
            + ([recipe_of(record)] if with_recipes else [])
        )
    return Table(
        title="All configurations",
        columns=[
            "device",
            "model",
            "batch",
            "seconds",
            "precision",
            "status",
            "s/batch",
            "s/sequence",
            "peak memory (GB)",
            "activations (GB)",
            "train GFLOPs/step",
            "source",
            "note",
        ]
        + (["recipe"] if with_recipes else []),
        rows=body,
        caption="GB = 1e9 bytes. Peak memory names its source (cuda_max_allocated: tensors on the GPU; rss_hwm: "
        "the process's resident high-water mark). Activations: tensors saved for backward. "
        "FLOPs = 2 per multiply-add, forward + backward + optimizer.",
    )


def environment_table(rows: Sequence) -> Table:
    """Where the numbers come from: one line per device and source."""
    groups: dict[tuple[str, str], list] = {}
    for record in rows:
        groups.setdefault((device_label(record), record.source), []).append(record)
    body = []
    for (device, source), members in groups.items():
        first = members[0]
        stamps = sorted(r.timestamp for r in members if r.timestamp)
        body.append(
            [
                device,
                source,
                str(len(members)),
                first.cpu_model,
                "" if first.cpu_cores is None else str(first.cpu_cores),
                "" if first.threads is None else str(first.threads),
                _gb(first.total_mem_bytes),
                first.gpu_name,
                first.torch_version,
                first.w2vprof_version,
                f"{stamps[0][:16]} .. {stamps[-1][:16]}" if stamps else "",
            ]
        )
    return Table(
        title="Devices and software",
        columns=[
            "device",
            "source",
            "rows",
            "CPU",
            "cores",
            "threads",
            "memory (GB)",
            "GPU",
            "torch",
            "w2vprof",
            "measured (UTC)",
        ],
        rows=body,
    )


# -- compare ----------------------------------------------------------------------------------------------
COMPARE_COLUMNS = [
    "device",
    "model",
    "batch",
    "precision",
    "sec_per_batch",
    "status",
    "slowdown_vs_baseline",
    "seconds",
    "sec_per_sequence",
    "source",
]


def comparison_csv(comparison) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COMPARE_COLUMNS)
    for row in comparison.rows:
        values = asdict(row)
        writer.writerow(["" if values[c] is None else values[c] for c in COMPARE_COLUMNS])
    return buffer.getvalue()


def comparison_json(comparison) -> str:
    return (
        json.dumps(
            {
                "baseline": comparison.baseline,
                "rows": [asdict(r) for r in comparison.rows],
                "batch_gains": [asdict(r) for r in comparison.batch_gains],
                "mixed_speedups": [asdict(r) for r in comparison.mixed_speedups],
                "oom": [asdict(r) for r in comparison.ooms],
            },
            indent=2,
        )
        + "\n"
    )


def comparison_tables(comparison) -> list[Table]:
    """Devices side by side (one column each), then batch gains, mixed-precision speedups and OOMs."""
    tables = (
        _side_by_side_table(comparison),
        _batch_gains_table(comparison),
        _mixed_speedups_table(comparison),
        _oom_table(comparison),
    )
    return [t for t in tables if t.rows]


def _side_by_side_table(comparison) -> Table:
    """One row per configuration, one column per device: seconds per batch (and times slower than the baseline)."""
    baseline = comparison.baseline
    devices = list(dict.fromkeys(r.device for r in comparison.rows))
    configs = sorted(
        {(r.model, r.seconds, r.batch, r.precision) for r in comparison.rows},
        key=lambda c: (_models([c[0], *MODEL_ORDER]).index(c[0]), c[1], c[2], c[3] != "fp32"),
    )
    by_key = {(r.device, r.model, r.seconds, r.batch, r.precision): r for r in comparison.rows}

    def cell(row) -> str:
        if row is None:
            return ""
        if row.sec_per_batch is None:
            return _status_cell(row.status)
        text = f"{row.sec_per_batch:.2f}"
        if baseline and row.slowdown_vs_baseline is not None and row.device != baseline:
            text += f" ({row.slowdown_vs_baseline:.1f}x)"
        return text

    return Table(
        title="Seconds per batch" + (f" (in brackets: times slower than {baseline})" if baseline else ""),
        columns=["model", "seconds", "batch", "precision"] + devices,
        rows=[
            [m, f"{s:g}", str(b), p] + [cell(by_key.get((d, m, s, b, p))) for d in devices] for (m, s, b, p) in configs
        ],
        caption="OOM: out of memory; -: no mixed precision on the device; empty: not measured.",
    )


def _batch_gains_table(comparison) -> Table:
    return Table(
        title="Per-sequence time: larger batch against the smallest",
        columns=["device", "model", "precision", "seconds", "batches", "s/sequence small", "s/sequence large", "gain"],
        rows=[
            [
                g.device,
                g.model,
                g.precision,
                f"{g.seconds:g}",
                f"{g.batch_small} -> {g.batch_large}",
                f"{g.sec_per_sequence_small:.3f}",
                f"{g.sec_per_sequence_large:.3f}",
                f"{g.per_sequence_gain:.0%}",
            ]
            for g in comparison.batch_gains
        ],
        caption="gain = 1 - (s/sequence at the larger batch) / (s/sequence at the smaller batch)",
    )


def _mixed_speedups_table(comparison) -> Table:
    return Table(
        title="Mixed precision over FP32",
        columns=["device", "model", "batch", "seconds", "FP32 s/batch", "mixed s/batch", "speedup"],
        rows=[
            [
                m.device,
                m.model,
                str(m.batch),
                f"{m.seconds:g}",
                f"{m.fp32_sec_per_batch:.2f}",
                f"{m.mixed_sec_per_batch:.2f}",
                f"{m.mixed_speedup:.2f}x",
            ]
            for m in comparison.mixed_speedups
        ],
        caption="speedup = FP32 time / mixed time",
    )


def _oom_table(comparison) -> Table:
    return Table(
        title="Out of memory",
        columns=["device", "model", "batch", "seconds", "precision"],
        rows=[[r.device, r.model, str(r.batch), f"{r.seconds:g}", r.precision] for r in comparison.ooms],
    )


# -- analysis ---------------------------------------------------------------------------------------------
def feasibility_tables(result) -> list[Table]:
    """The fits, then one line per device: the longest utterance per model, precision and batch."""
    fits = result.fits.fits
    fit_table = Table(
        title="Training memory = a + b x (batch x seconds), least squares",
        columns=["model", "precision", "a (GB)", "b (GB/batch/s)", "R^2", "n", "batch x s", "memory", "device"],
        rows=[
            [
                f.model,
                f.precision,
                f"{f.intercept_bytes / 1e9:.3f}",
                f"{f.bytes_per_batch_second / 1e9:.4f}",
                f"{f.r2:.4f}",
                str(f.points),
                f"{f.min_batch_seconds:g}-{f.max_batch_seconds:g}",
                "peak" if f.memory_source == "peak_mem_bytes" else "parts",
                f.devices,
            ]
            for f in fits
        ],
        caption="n points measured over the batch x s range. memory: peak = measured peak_mem_bytes; parts = "
        "activations + parameters + gradients + optimizer state. Longest utterance = (usable - a) / "
        "(b x batch). GB = 1e9 bytes.",
    )
    combos = list(dict.fromkeys((r.model, r.precision, r.batch) for r in result.rows))
    by_device: dict[str, dict] = {}
    for row in result.rows:
        by_device.setdefault(row.device, {})[(row.model, row.precision, row.batch)] = row

    def cell(row) -> str:
        if row.note.startswith("no mixed"):
            return "no mixed"
        if row.max_seconds is None:
            return "none"
        mark = "*" if row.max_seconds_extrapolated else ""
        return f"{row.max_seconds:.1f}{mark} " + ("yes" if row.fits else "no")

    target = result.rows[0].target_seconds
    decisions = Table(
        title=f"Longest utterance (s) that trains in {result.usable_fraction:.0%} of the memory; "
        f"yes/no: fits at {target:g} s",
        columns=["device", "memory (GB)", "usable (GB)"] + [f"{m} {p} b{b}" for m, p, b in combos],
        rows=[
            [device, f"{next(iter(cells.values())).memory_gb:g}", f"{next(iter(cells.values())).usable_gb:.1f}"]
            + [cell(cells[c]) if c in cells else "" for c in combos]
            for device, cells in by_device.items()
        ],
        caption="*: extrapolated beyond twice the largest measured batch x seconds. none: even the fixed part a "
        "does not fit. no mixed: the device has no mixed precision.",
    )
    return [fit_table, decisions]


def fl_estimate_table(setting, rows) -> Table:
    per_round = setting.clients_per_round or setting.clients
    communication = any(r.communication_hours_per_round is not None for r in rows)
    lengths = len({r.seconds for r in rows}) > 1  # a column only when it tells rows apart
    batches = rows[0].batches_per_epoch if rows else 0
    return Table(
        title=(
            f"Federated pretraining: {setting.clients} clients ({per_round} per round) x "
            f"{setting.samples_per_client:,} samples, batch {setting.batch}, {setting.local_epochs:g} local "
            f"epoch(s), {setting.rounds} rounds, {setting.model} {setting.precision}"
        ),
        columns=["device"]
        + (["seconds"] if lengths else [])
        + ["s/batch", "epoch (h)"]
        + (["transfer (h/round)"] if communication else [])
        + ["round (h)", "total (days)", "device-hours", "source"],
        rows=[
            [r.device]
            + ([f"{r.seconds:g}"] if lengths else [])
            + [f"{r.sec_per_batch:.2f}", f"{r.epoch_hours:.2f}"]
            + ([_fmt(r.communication_hours_per_round, 3)] if communication else [])
            + [f"{r.round_hours:.2f}", f"{r.total_days:.1f}", f"{r.device_hours:,.0f}", r.source]
            for r in rows
        ],
        caption=f"An epoch is {batches:,} batches. Clients train concurrently: a round lasts one client's local "
        "epochs (plus transfers with --bandwidth). device-hours: training summed over the clients.",
    )


def _fmt(value: Optional[float], digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def forecast_text(result) -> str:
    if result.ratio <= 1:
        verdict = (
            f"{result.device} is already as fast as {result.target} "
            f"(ratio {result.ratio:.2f}): no wait under any doubling law."
        )
    else:
        verdict = (
            f"Doubling law: compute doubles every {result.doubling_months:g} months, so closing a "
            f"{result.ratio:.2f}x gap takes log2({result.ratio:.2f}) x {result.doubling_months:g} / 12 = "
            f"{result.years:.1f} years: {result.from_year:g} + {result.years:.1f} = {result.year:.1f}."
        )
    return (
        f"{result.device} takes {result.device_sec_per_batch:.3g} s per batch, {result.target} "
        f"{result.target_sec_per_batch:.3g} s ({result.model}, batch {result.batch}, {result.precision}, "
        f"{result.seconds:g} s utterances): ratio {result.ratio:.2f}.\n{verdict}\n"
    )


# -- profile ----------------------------------------------------------------------------------------------
def _bytes_text(value: Optional[float]) -> str:
    return "-" if value is None else f"{value / 1e9:.2f} GB" if value >= 1e9 else f"{value / 1e6:.1f} MB"


def _flops_text(value: Optional[float]) -> str:
    return "-" if value is None else f"{value / 1e9:.1f} GFLOP" if value >= 1e9 else f"{value / 1e6:.1f} MFLOP"


def profile_table(record) -> Table:
    """One profiled configuration as measure -> value: time, FLOPs, memory and energy, with units in the cells."""
    r = record
    rows = [["status", r.status + (f" ({r.error})" if r.error else "")]]
    if r.recipe != "default":
        rows += [
            ["recipe", r.recipe],
            ["recomputed forward (checkpointing)", _flops_text(r.recompute_flops)],
            ["trainable parameters", "-" if r.trainable_params is None else f"{r.trainable_params:,}"],
        ]
    if r.compile_sec is not None:
        rows.append(["compilation (not in the timed steps)", f"{r.compile_sec:.1f} s"])
    if r.sec_per_batch_median is not None:
        spread = f"{r.sec_per_batch_mean:.3f} / {r.sec_per_batch_std:.3f} / {r.sec_per_batch_iqr:.3f} s"
        rows += [
            ["seconds per batch (median)", f"{r.sec_per_batch_median:.3f} s"],
            ["  mean / std / IQR", spread],
            ["seconds per sequence", f"{r.sec_per_sequence:.3f} s"],
        ]
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


def profile_notes(record, layers: Sequence) -> list[str]:
    """The lines under a profile's table: the layer saving the most for backward, and where the time goes."""
    if not layers:
        return []
    from w2vprof.measure.diagnostics import time_summary_line

    top = max(layers, key=lambda row: row.act_mem_bytes)
    notes = [f"Largest activation memory: {top.layer} ({top.act_mem_bytes / 1e6:.0f} MB); per-layer rows in layers.csv"]
    line = time_summary_line(record, list(layers))
    return notes + [line] if line else notes
