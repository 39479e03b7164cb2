"""The report's table of seconds per layer of one configuration (two or more devices side by side are
`compare --layers`: w2vprof.report.compare_views). Data in, `Table` out; nothing here reads files or measures.
"""

from __future__ import annotations

from typing import Optional, Sequence

from w2vprof.records import LayerRecord
from w2vprof.report.cells import ms, number, percent
from w2vprof.report.render import Column, Table, headings

__all__ = ["layer_times_table"]


def layer_times_table(layers: Sequence[LayerRecord], label: str, peak_flops: Optional[float] = None) -> Optional[Table]:
    """Seconds per layer of one configuration, forward and backward, with the FLOP/s each reached (and, given the
    measured matmul peak, which fraction of it); None when the rows have no times."""
    timed = [row for row in layers if row.sec is not None]
    if not timed:
        return None
    columns = headings(
        "layer",
        "kind",
        Column("forward", "ms"),
        Column("backward", "ms"),
        Column("total", "ms"),
        Column("share of step", "%"),
        "forward GFLOP/s",
        "backward GFLOP/s",
    )
    if peak_flops:
        columns += headings(Column("of matmul peak", "%"))
    rows = []
    for row in timed:
        cells = [
            row.layer,
            row.kind,
            ms(row.fwd_sec),
            ms(row.bwd_sec),
            ms(row.sec),
            percent(row.time_share),
            number(row.fwd_flops_per_sec, 1, 1e9),
            number(row.bwd_flops_per_sec, 1, 1e9),
        ]
        if peak_flops:
            flops = (row.fwd_flops or 0) + (row.bwd_flops or 0)
            cells.append(percent(flops / row.sec / peak_flops) if flops and row.sec else "")
        rows.append(cells)
    total = ["step (rows' sum)", "", "", "", ms(sum(row.sec or 0.0 for row in timed)), "100.0", "", ""]
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
