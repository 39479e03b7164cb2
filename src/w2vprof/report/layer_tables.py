"""Tables of seconds per layer: one configuration's (the report) and two or more devices' (`compare --layers`).

Data in, `Table` (w2vprof.report.render) or text out; nothing here reads files or measures.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from typing import Optional, Sequence

from w2vprof.analysis.compare import LayerCompareRow, LayerComparison
from w2vprof.report.render import Table

__all__ = ["layer_times_table", "layer_comparison_table", "layer_comparison_csv", "layer_comparison_json"]


def _ms(seconds: Optional[float]) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.1f}"


def _percent(fraction: Optional[float]) -> str:
    return "" if fraction is None else f"{100 * fraction:.1f}"


def _gflops(rate: Optional[float]) -> str:
    return "" if rate is None else f"{rate / 1e9:.1f}"


def layer_times_table(layers: Sequence, label: str, peak_flops: Optional[float] = None) -> Optional[Table]:
    """Seconds per layer of one configuration, forward and backward, with the FLOP/s each reached (and, given the
    measured matmul peak, which fraction of it); None when the rows have no times."""
    timed = [row for row in layers if row.sec is not None]
    if not timed:
        return None
    columns = [
        "layer",
        "kind",
        "forward (ms)",
        "backward (ms)",
        "total (ms)",
        "share of step (%)",
        "forward GFLOP/s",
        "backward GFLOP/s",
    ]
    if peak_flops:
        columns.append("of matmul peak (%)")
    rows = []
    for row in timed:
        cells = [
            row.layer,
            row.kind,
            _ms(row.fwd_sec),
            _ms(row.bwd_sec),
            _ms(row.sec),
            _percent(row.time_share),
            _gflops(row.fwd_flops_per_sec),
            _gflops(row.bwd_flops_per_sec),
        ]
        if peak_flops:
            flops = (row.fwd_flops or 0) + (row.bwd_flops or 0)
            cells.append(_percent(flops / row.sec / peak_flops) if flops and row.sec else "")
        rows.append(cells)
    total = ["step (rows' sum)", "", "", "", _ms(sum(row.sec or 0.0 for row in timed)), "100.0", "", ""]
    rows.append(total + ([""] if peak_flops else []))
    return Table(
        title=f"Seconds per layer ({label})",
        columns=columns,
        rows=rows,
        align="ll" + "r" * (len(columns) - 2),
        emphasis=frozenset({len(rows) - 1}),
        caption="Medians over the extra steps after the timed ones; `other` is the rest of the step "
        "(optimizer, zero_grad, the autograd engine's start and end).",
    )


def _cells(row: LayerCompareRow, devices: list[str], baseline: str) -> list[str]:
    cells = [row.layer, row.kind]
    cells += [_ms(row.sec.get(device)) for device in devices]
    cells += [
        "" if row.ratio.get(device) is None else f"{row.ratio[device]:.2f}x" for device in devices if device != baseline
    ]
    return cells


def layer_comparison_table(comparison: LayerComparison) -> Table:
    """Seconds per layer per device (fastest first), then each slower device's ratio to the fastest; the rows
    slowing down most on the slowest device first, the step's total last."""
    devices, baseline = comparison.devices, comparison.baseline
    columns = ["layer", "kind"] + [f"{device} (ms)" for device in devices]
    columns += [f"{device} / {baseline}" for device in devices if device != baseline]
    rows = [_cells(row, devices, baseline) for row in comparison.rows]
    rows.append(_cells(comparison.total, devices, baseline))
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


def layer_comparison_csv(comparison: LayerComparison) -> str:
    """One line per layer: layer, kind, then per device its seconds and share, then per slower device its ratio."""
    devices, baseline = comparison.devices, comparison.baseline
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["layer", "kind"]
        + [f"{kind}:{device}" for device in devices for kind in ("sec", "share")]
        + [f"ratio:{device}" for device in devices if device != baseline]
    )
    for row in [*comparison.rows, comparison.total]:
        values = [row.layer, row.kind]
        values += [_plain(part.get(device)) for device in devices for part in (row.sec, row.share)]
        values += [_plain(row.ratio.get(device)) for device in devices if device != baseline]
        writer.writerow(values)
    return buffer.getvalue()


def _plain(value: Optional[float]) -> str:
    return "" if value is None else repr(value)


def layer_comparison_json(comparison: LayerComparison) -> str:
    return json.dumps(asdict(comparison), indent=2) + "\n"
