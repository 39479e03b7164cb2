"""The report's tables of results rows: the paper's Table 2 (seconds per batch, device x batch against model x
precision), every configuration with its time, memory and FLOPs, and where the numbers come from."""

from __future__ import annotations

from typing import Sequence

from w2vprof.analysis.data import device_label, latest_by_config, sec_per_batch
from w2vprof.records import DEFAULT_RECIPE, ResultRecord, length_key, recipe_of
from w2vprof.report.cells import config_cells, gb, model_rank, models_in_order, number, status_cell
from w2vprof.report.render import Column, Table, headings

__all__ = ["table2", "results_table", "environment_table"]

PRECISIONS = (("fp32", "FP32"), ("mixed", "Mixed"))


def table2(rows: Sequence[ResultRecord], seconds: float) -> Table:
    """Table 2 style: rows device x batch, columns model x {FP32, Mixed}; cells seconds per batch, OOM or -."""
    latest = latest_by_config(r for r in rows if length_key(r.seconds) == length_key(seconds))
    models = models_in_order([k[1] for k in latest])
    devices = list(dict.fromkeys(k[0] for k in latest))
    body = []
    for device in devices:
        for batch in sorted({k[2] for k in latest if k[0] == device}):
            row = [device, str(batch)]
            for model in models:
                for precision, _ in PRECISIONS:
                    record = latest.get((device, model, batch, length_key(seconds), precision))
                    row.append(_time_cell(record))
            body.append(row)
    return Table(
        title=f"Training time (seconds per batch), {seconds:g} s utterances",
        columns=["device", "batch"] + [f"{m} {label}" for m in models for _, label in PRECISIONS],
        rows=body,
        caption="Median seconds per training step (forward + backward + optimizer); the paper's rows are its "
        "averages. OOM: out of memory; -: not measured, or no mixed precision on the device.",
    )


def _time_cell(record: ResultRecord | None) -> str:
    if record is None:
        return "-"
    time = sec_per_batch(record)
    if record.status == "ok" and time is not None:
        return f"{time:.2f}"
    return status_cell(record.status)


def results_table(rows: Sequence[ResultRecord]) -> Table:
    """Every configuration of the inputs, one line each (the last row of a configuration that was rerun); a recipe
    column when any row trained with a recipe other than the default."""
    latest = latest_by_config(rows, recipes=True)
    with_recipes = any(key[-1] != DEFAULT_RECIPE for key in latest)
    ordered = sorted(
        latest.values(), key=lambda r: (device_label(r), model_rank(r.model), r.precision, r.batch, r.seconds)
    )
    return Table(
        title="All configurations",
        columns=headings(
            "device",
            "model",
            "batch",
            "seconds",
            "precision",
            "status",
            "s/batch",
            "s/sequence",
            Column("peak memory", "GB"),
            Column("activations", "GB"),
            "train GFLOPs/step",
            "source",
            "note",
        )
        + (["recipe"] if with_recipes else []),
        rows=[_result_row(record) + ([recipe_of(record)] if with_recipes else []) for record in ordered],
        caption="GB = 1e9 bytes. Peak memory names its source (cuda_max_allocated: tensors on the GPU; rss_hwm: "
        "the process's resident high-water mark). Activations: tensors saved for backward. "
        "FLOPs = 2 per multiply-add, forward + backward + optimizer.",
    )


def _result_row(record: ResultRecord) -> list[str]:
    time = sec_per_batch(record)
    peak = gb(record.peak_mem_bytes)
    return config_cells(record) + [
        record.status,
        number(time, 3),
        "" if time is None else f"{time / record.batch:.3f}",
        peak + (f" ({record.peak_mem_source})" if peak and record.peak_mem_source else ""),
        gb(record.act_mem_bytes),
        number(record.train_flops, 1, 1e9),
        record.source,
        record.error or record.skipped_because,
    ]


def environment_table(rows: Sequence[ResultRecord]) -> Table:
    """Where the numbers come from: one line per device and source."""
    groups: dict[tuple[str, str], list[ResultRecord]] = {}
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
                gb(first.total_mem_bytes),
                first.gpu_name,
                first.torch_version,
                first.w2vprof_version,
                f"{stamps[0][:16]} .. {stamps[-1][:16]}" if stamps else "",
            ]
        )
    return Table(
        title="Devices and software",
        columns=headings(
            "device",
            "source",
            "rows",
            "CPU",
            "cores",
            "threads",
            Column("memory", "GB"),
            "GPU",
            "torch",
            "w2vprof",
            Column("measured", "UTC"),
        ),
        rows=body,
    )
