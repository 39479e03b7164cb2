"""Models side by side at the paper's configuration (FIG2_CONFIG: batch 4, 5.5 s, FP32): parameters, activation
memory and seconds per batch per model and objective, for `w2vprof report` and `w2vprof compare`.

Shown only where the results hold a model beyond the paper's Table 2 pair (base, large: Table 2 already sets those
side by side) or an objective beyond pretraining, so a report or comparison of wav2vec 2.0 pretraining alone is as
it was before model families.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from w2vprof.analysis.data import PRETRAIN_OBJECTIVE, device_label, objective_of, sec_per_batch
from w2vprof.models.size import FP32_BYTES
from w2vprof.paper import FIG2_CONFIG, TABLE2_MODELS
from w2vprof.records import DEFAULT_RECIPE, ResultRecord, length_key, recipe_of
from w2vprof.report.cells import model_rank, status_cell
from w2vprof.report.render import Column, Table, headings
from w2vprof.report.views import View

__all__ = ["ModelRow", "add_models_table", "models_at_paper_config", "models_table", "shows_models"]


@dataclass
class ModelRow:
    """One model and objective on one device at the paper's configuration."""

    device: str
    model: str
    objective: str
    status: str
    parameters: Optional[int]  # from the row's FP32 parameter bytes (mixed precision keeps FP32 master weights)
    act_mem_bytes: Optional[int]
    sec_per_batch: Optional[float]


def shows_models(rows: Sequence[ResultRecord]) -> bool:
    """Whether the rows hold a model beyond base and large, or an objective beyond pretraining."""
    return any(r.model not in TABLE2_MODELS or objective_of(r) != PRETRAIN_OBJECTIVE for r in rows)


def models_at_paper_config(rows: Sequence[ResultRecord]) -> list[ModelRow]:
    """The latest default-recipe row per (device, model, objective) at batch 4, 5.5 s, FP32; models in the
    paper's order first, then by name, pretraining before fine-tuning."""
    _, batch, seconds, precision = FIG2_CONFIG
    latest: dict[tuple[str, str, str], ResultRecord] = {}
    for r in rows:
        at_config = (r.batch, length_key(r.seconds), r.precision) == (batch, seconds, precision)
        if at_config and recipe_of(r) == DEFAULT_RECIPE:
            latest[(device_label(r), r.model, objective_of(r))] = r
    ordered = sorted(latest, key=lambda k: (model_rank(k[1]), k[1], k[2] != PRETRAIN_OBJECTIVE, k[2], k[0]))
    return [_model_row(key, latest[key]) for key in ordered]


def _model_row(key: tuple[str, str, str], r: ResultRecord) -> ModelRow:
    parameters = None if r.param_bytes is None else r.param_bytes // FP32_BYTES
    time = sec_per_batch(r) if r.status == "ok" else None
    return ModelRow(key[0], key[1], key[2], r.status, parameters, r.act_mem_bytes, time)


def models_table(models: Sequence[ModelRow]) -> Table:
    model, batch, seconds, precision = FIG2_CONFIG

    def number(value: Any, scale: float, digits: str) -> str:
        return "" if value is None else f"{value / scale:{digits}}"

    return Table(
        title=f"Models side by side (batch {batch}, {seconds:g} s, {precision}: the paper's configuration)",
        columns=headings("model", "objective", "device", Column("params", "M"), Column("activations", "GB"), "s/batch"),
        rows=[
            [
                m.model,
                m.objective,
                m.device,
                number(m.parameters, 1e6, ".2f"),
                number(m.act_mem_bytes, 1e9, ".2f"),
                status_cell(m.status) if m.sec_per_batch is None else f"{m.sec_per_batch:.3g}",
            ]
            for m in models
        ],
        align="lllrrr",
        caption="params: FP32 parameter bytes / 4; activations: tensors saved for backward; s/batch: median "
        "seconds per training step. GB = 1e9 bytes. ctc: the encoder fine-tuned with CTC (docs/models.md).",
    )


def add_models_table(view: View, rows: Sequence[ResultRecord]) -> View:
    """`view` with the models table after its first table (and `models` in its JSON document) where the rows
    hold other models or objectives and some were measured at the paper's configuration; else `view` unchanged."""
    models = models_at_paper_config(rows) if shows_models(rows) else []
    if not models:
        return view
    view.tables.insert(1, models_table(models))
    if isinstance(view.document, dict):
        view.document = {**view.document, "models": models}
    return view
