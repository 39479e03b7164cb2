"""Parameters and inference FLOPs per module: `w2vprof summary`'s view of one model, and the paper's Table 1 of
one or more models for the report (from `summary --format csv` files)."""

from __future__ import annotations

from typing import Sequence

from w2vprof.records import ModuleSummaryRow
from w2vprof.report.render import Column, Table, headings
from w2vprof.report.views import View

__all__ = ["summary_view", "table1"]

CAPTION = "FLOPs = 2 per multiply-add; attention = QK^T and AV products (not in the paper's Table 1)"


def summary_view(rows: Sequence[ModuleSummaryRow], kind: str = "wav2vec 2.0", objective: str = "pretrain") -> View:
    """`w2vprof summary`: params in millions and GFLOPs per module (or layer), the total in bold; the rows as
    counted in CSV and JSON. The title names the model's family (`kind`: wav2vec 2.0, HuBERT, WavLM; a user's
    model by its name alone) and a fine-tuning objective (pretraining goes unsaid, as before objectives)."""
    first = rows[0]
    name = first.model if kind == "user" else f"{kind} {first.model}"
    if objective != "pretrain":
        name += " (CTC fine-tuning)" if objective == "ctc" else f" ({objective})"
    table = Table(
        title=f"{name}: inference cost of {first.seconds:g} s x batch {first.batch}",
        columns=headings("module", Column("params", "M"), "GFLOPs"),
        rows=[[row.module, f"{row.params / 1e6:.2f}", f"{row.inference_flops / 1e9:.2f}"] for row in rows],
        caption=CAPTION,
        emphasis=frozenset(i for i, row in enumerate(rows) if row.module == "total"),
    )
    return View(tables=[table], records=list(rows))


def table1(summary_rows: Sequence[ModuleSummaryRow]) -> Table:
    """Table 1 style from `w2vprof summary --format csv` rows: parameters (M) and GFLOPs per module."""
    groups = list(dict.fromkeys((r.model, r.seconds, r.batch) for r in summary_rows))
    per_model = {g[0] for g in groups}
    # A model measured at one input only is labelled by its name; otherwise the input goes in the label.
    label = {g: g[0] if len(per_model) == len(groups) else f"{g[0]} {g[1]:g} s x{g[2]}" for g in groups}
    modules = list(dict.fromkeys(r.module for r in summary_rows))
    by_key = {(r.model, r.seconds, r.batch, r.module): r for r in summary_rows}
    body = []
    for module in modules:
        cells = [by_key.get(g + (module,)) for g in groups]
        body.append(
            [module]
            + ["" if row is None else f"{row.params / 1e6:.2f}" for row in cells]
            + ["" if row is None else f"{row.inference_flops / 1e9:.2f}" for row in cells]
        )
    inputs = sorted({(g[1], g[2]) for g in groups})
    return Table(
        title="Parameters and inference FLOPs per module (" + ", ".join(f"{s:g} s, batch {b}" for s, b in inputs) + ")",
        columns=headings(
            "module",
            *(Column(f"{label[g]} params", "M") for g in groups),
            *(f"{label[g]} GFLOPs" for g in groups),
        ),
        rows=body,
        caption="FLOPs = 2 per multiply-add, one eval-mode forward pass (w2vprof summary).",
    )
