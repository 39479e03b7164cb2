"""`w2vprof models`: every model w2vprof can build, its parameters and where its configuration comes from."""

from __future__ import annotations

from typing import Sequence

from w2vprof.models.registry import ModelInfo
from w2vprof.report.render import Column, Table, headings
from w2vprof.report.views import View

__all__ = ["models_view"]


def models_view(models: Sequence[ModelInfo]) -> View:
    """One row per model: its objective family, the objectives it trains, parameters for pretraining and for CTC
    fine-tuning (counted on the meta device: no weights allocated), and the source of its configuration."""
    table = Table(
        title="Models (parameters counted from shapes, on the meta device)",
        columns=headings(
            "model", "family", "objectives", Column("pretrain params", "M"), Column("ctc params", "M"), "configuration"
        ),
        rows=[
            [
                info.name,
                info.kind,
                ",".join(info.objectives),
                f"{info.parameters / 1e6:.2f}",
                "" if info.ctc_parameters is None else f"{info.ctc_parameters / 1e6:.2f}",
                info.source,
            ]
            for info in models
        ],
        align="lllrrl",
        caption="ctc params: the encoder, three linear blocks and a 32-character output layer (--vocab 32). "
        "Your own model: --model package.module:factory (docs/models.md).",
    )
    # CSV: one line per model with the raw counts (objectives joined, as `--objective` takes them)
    raw = Table(
        title="models",
        columns=["name", "kind", "objectives", "parameters", "ctc_parameters", "source"],
        rows=[
            [
                info.name,
                info.kind,
                ",".join(info.objectives),
                str(info.parameters),
                "" if info.ctc_parameters is None else str(info.ctc_parameters),
                info.source,
            ]
            for info in models
        ],
    )
    return View(tables=[table], records=list(models), csv=raw)
