"""`w2vprof compare`'s views: devices side by side against a baseline (with batch gains, mixed-precision speedups
and OOMs), and `compare --layers`: seconds per layer per device, the layers slowing down most first."""

from __future__ import annotations

from dataclasses import asdict
from typing import Optional

from w2vprof.analysis.compare import CompareRow, Comparison, LayerCompareRow, LayerComparison
from w2vprof.report.cells import model_rank, ms, status_cell
from w2vprof.report.render import Column, Table, headings
from w2vprof.report.views import View

__all__ = ["COMPARE_COLUMNS", "compare_view", "layer_comparison_view", "layer_comparison_table"]

#: compare's CSV: these fields of each row, in this order.
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


def compare_view(comparison: Comparison) -> View:
    """Devices side by side (one column each), then batch gains, mixed-precision speedups and OOMs; the rows in
    CSV, and everything in JSON."""
    tables = (
        _side_by_side_table(comparison),
        _batch_gains_table(comparison),
        _mixed_speedups_table(comparison),
        _oom_table(comparison),
    )
    document = {
        "baseline": comparison.baseline,
        "rows": comparison.rows,
        "batch_gains": comparison.batch_gains,
        "mixed_speedups": comparison.mixed_speedups,
        "oom": comparison.ooms,
    }
    return View(
        tables=[t for t in tables if t.rows],
        records=comparison.rows,
        document=document,
        csv=Table("", COMPARE_COLUMNS, [_csv_cells(row) for row in comparison.rows]),
    )


def _csv_cells(row: CompareRow) -> list[str]:
    values = asdict(row)
    return ["" if values[c] is None else str(values[c]) for c in COMPARE_COLUMNS]


def _side_by_side_table(comparison: Comparison) -> Table:
    """One row per configuration, one column per device: seconds per batch (and times slower than the baseline)."""
    baseline = comparison.baseline
    devices = list(dict.fromkeys(r.device for r in comparison.rows))
    configs = sorted(
        {(r.model, r.seconds, r.batch, r.precision) for r in comparison.rows},
        key=lambda c: (model_rank(c[0]), c[1], c[2], c[3] != "fp32"),
    )
    by_key = {(r.device, r.model, r.seconds, r.batch, r.precision): r for r in comparison.rows}

    def cell(row: Optional[CompareRow]) -> str:
        if row is None:
            return ""
        if row.sec_per_batch is None:
            return status_cell(row.status)
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


def _batch_gains_table(comparison: Comparison) -> Table:
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


def _mixed_speedups_table(comparison: Comparison) -> Table:
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


def _oom_table(comparison: Comparison) -> Table:
    return Table(
        title="Out of memory",
        columns=["device", "model", "batch", "seconds", "precision"],
        rows=[[r.device, r.model, str(r.batch), f"{r.seconds:g}", r.precision] for r in comparison.ooms],
    )


# -- compare --layers ------------------------------------------------------------------------------------------
def layer_comparison_view(comparison: LayerComparison) -> View:
    """`compare --layers`: the table and its notes; in CSV one line per layer with a column per device and
    measure; in JSON the whole comparison."""
    return View(
        tables=[layer_comparison_table(comparison)],
        notes=comparison.notes,
        records=[*comparison.rows, comparison.total],
        document=comparison,
        csv=_layer_comparison_csv(comparison),
    )


def _ratio_cells(row: LayerCompareRow, devices: list[str], baseline: str) -> list[str]:
    cells = [row.layer, row.kind]
    cells += [ms(row.sec.get(device)) for device in devices]
    cells += [
        "" if row.ratio.get(device) is None else f"{row.ratio[device]:.2f}x" for device in devices if device != baseline
    ]
    return cells


def layer_comparison_table(comparison: LayerComparison) -> Table:
    """Seconds per layer per device (fastest first), then each slower device's ratio to the fastest; the rows
    slowing down most on the slowest device first, the step's total last."""
    devices, baseline = comparison.devices, comparison.baseline
    columns = headings("layer", "kind", *(Column(device, "ms") for device in devices))
    columns += [f"{device} / {baseline}" for device in devices if device != baseline]
    rows = [_ratio_cells(row, devices, baseline) for row in comparison.rows]
    rows.append(_ratio_cells(comparison.total, devices, baseline))
    caption = (
        f"Sorted by how much slower each layer runs on {comparison.slowest} than on {baseline}; a ratio "
        "above the step's means that layer slows down more than the step does."
    )
    return Table(
        title=f"Seconds per layer per device ({comparison.config})",
        columns=columns,
        rows=rows,
        align="ll" + "r" * (len(columns) - 2),
        emphasis=frozenset({len(rows) - 1}),
        caption=caption,
    )


def _layer_comparison_csv(comparison: LayerComparison) -> Table:
    """One line per layer: layer, kind, then per device its seconds and share, then per slower device its ratio."""
    devices, baseline = comparison.devices, comparison.baseline
    slower = [device for device in devices if device != baseline]
    columns = ["layer", "kind"] + [f"{kind}:{device}" for device in devices for kind in ("sec", "share")]
    columns += [f"ratio:{device}" for device in slower]
    rows = []
    for row in [*comparison.rows, comparison.total]:
        values = [row.layer, row.kind]
        values += [_exact(part.get(device)) for device in devices for part in (row.sec, row.share)]
        values += [_exact(row.ratio.get(device)) for device in slower]
        rows.append(values)
    return Table("", columns, rows)


def _exact(value: Optional[float]) -> str:
    """A number as Python writes it back exactly (repr), empty where there is none."""
    return "" if value is None else repr(value)
