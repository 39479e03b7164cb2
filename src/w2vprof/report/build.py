"""A report from results files: which tables and figures the data supports, and for which configuration.

`build_report` chooses, from the inputs (w2vprof.report.inputs.load_inputs), the tables (the paper's Tables 1-2,
every configuration, the devices, recipes, seconds per layer, a fleet's days) and the figures (Figs. 2-4 of the
paper, the roofline, the recipes' memory against time, the federated runs), skipping with a note every one its
data cannot support; w2vprof.report.pages renders and writes them. `report_to_folder` does all three. Never
measures anything.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

from w2vprof.analysis.data import device_label, latest_by_config, sec_per_batch
from w2vprof.errors import SettingError
from w2vprof.fl.records import RunCurves
from w2vprof.paper import FIG2_CONFIG, PAPER_SECONDS
from w2vprof.records import DEFAULT_RECIPE, LayerRecord, ResultRecord, length_key, recipe_of
from w2vprof.report import plots
from w2vprof.report.inputs import ReportInputs, load_inputs
from w2vprof.report.layer_tables import layer_times_table
from w2vprof.report.pages import Report, check_report_folder, write_report
from w2vprof.report.result_tables import environment_table, results_table, table2
from w2vprof.report.summary_views import table1

__all__ = ["build_report", "report_to_folder", "roofline_points"]


def _pick_layer_config(inputs: ReportInputs, timed: bool = False) -> Optional[int]:
    """The configuration for Fig. 2: the paper's (base, batch 4, 5.5 s, FP32) if measured, else the largest.
    `timed`: among those whose layer rows have seconds per layer."""
    candidates = [
        i
        for i in inputs.layers
        if inputs.results[i].status == "ok" and (not timed or any(row.sec is not None for row in inputs.layers[i]))
    ]
    if not candidates:
        return None
    for index in candidates:
        r = inputs.results[index]
        if (r.model, r.batch, length_key(r.seconds), r.precision) == FIG2_CONFIG and recipe_of(r) == DEFAULT_RECIPE:
            return index
    return max(
        candidates,
        key=lambda i: (
            recipe_of(inputs.results[i]) == DEFAULT_RECIPE,
            inputs.results[i].model != "tiny",
            inputs.results[i].batch * inputs.results[i].seconds,
        ),
    )


def _table_seconds(results: list[ResultRecord], requested: Optional[float]) -> tuple[float, Counter]:
    counts = Counter(length_key(r.seconds) for r in results)
    if requested is not None:
        if length_key(requested) not in counts:
            raise SettingError(
                "seconds",
                f"{requested:g}: no results at that length; the data has "
                + ", ".join(f"{s:g}" for s in sorted(counts)),
            )
        return requested, counts
    measured = Counter(length_key(r.seconds) for r in results if r.source != "paper")
    # The paper's length when the data has it; else the length measured most often.
    return (PAPER_SECONDS if PAPER_SECONDS in counts else (measured or counts).most_common(1)[0][0]), counts


def build_report(inputs: ReportInputs, table_seconds: Optional[float] = None) -> Report:
    report = Report()
    report.notes.append("Inputs: " + ", ".join(inputs.sources))
    report.notes += inputs.notes
    if inputs.summaries:
        report.tables["table1"] = table1(inputs.summaries)
    measured = [r for r in inputs.results if r.source != "paper"]
    if inputs.results:
        seconds, counts = _table_seconds(inputs.results, table_seconds)
        report.tables["table2"] = table2(inputs.results, seconds)
        _models_side_by_side(inputs.results, report)
        report.notes.append(
            f"Table 2 at {seconds:g} s utterances (lengths in the data: "
            + ", ".join(f"{s:g}" for s in sorted(counts))
            + " s; choose with --seconds)"
        )
        report.tables["results"] = results_table(measured or inputs.results)
        report.tables["environment"] = environment_table(inputs.results)
    _recipes(measured, report)
    _figure2(inputs, report)
    _length_figures(measured, report)
    _federated_figures(inputs, report)
    return report


def report_to_folder(
    paths: list[Path],
    folder: Path,
    reference: Optional[str] = None,
    table_seconds: Optional[float] = None,
    fmt: str = "md",
) -> Report:
    """The whole `w2vprof report`: read the inputs, build the report, write it (`fmt` latex: each table also as
    .tex); a bad folder fails first."""
    check_report_folder(Path(folder))
    report = build_report(load_inputs(paths, reference), table_seconds)
    write_report(report, folder, latex=fmt == "latex")
    return report


def _federated_figures(inputs: ReportInputs, report: Report) -> None:
    """Fig. 5 top (validation loss per round, one curve per run/aggregation) and each run's client cost."""
    if not inputs.fl_runs:
        return
    from w2vprof.fl.plots import client_cost_png, validation_loss_png

    _add(
        report,
        "fl_validation_loss.png",
        validation_loss_png(inputs.fl_runs),
        "Validation loss of the aggregated model after each federated round, one curve per run (aggregation)",
    )
    for run in inputs.fl_runs:
        name = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in run.folder.name)
        _add(
            report,
            f"fl_client_cost_{name}.png",
            client_cost_png(run),
            f"{run.label}: seconds and peak resident memory of every client in every round (dots), median (line)",
        )
        if run.fleet is not None:
            _fleet_run(run, name, report)


def _fleet_run(run: RunCurves, name: str, report: Report) -> None:
    """A run simulated on a fleet: each round's timeline on the fleet and the days to train per fleet mix."""
    from w2vprof.fl.plots import fleet_timeline_png
    from w2vprof.report.fleet_views import fleet_mix_table

    assert run.fleet is not None
    deadline = "" if run.fleet.deadline_sec is None else f", the deadline ({run.fleet.deadline_sec:g} s) dashed"
    _add(
        report,
        f"fl_fleet_timeline_{name}.png",
        fleet_timeline_png(run),
        f"{run.label}: each round on the fleet, one bar per client from 0 to its virtual seconds (its device's "
        f"measured seconds per batch x its local steps + transfers), coloured by device; hatched: cut by the "
        f"deadline; a cross: left out before training; a tick: where the round ended{deadline}",
    )
    if run.fleet.mixes:
        report.tables[f"fl_fleet_days_{name}"] = fleet_mix_table(run.fleet)


def _models_side_by_side(results: list[ResultRecord], report: Report) -> None:
    """The models table (report/model_comparison.py) where the results hold models or objectives beyond
    wav2vec 2.0 pretraining of base and large, and rows at the paper's configuration."""
    from w2vprof.report.model_comparison import models_at_paper_config, models_table, shows_models

    if not shows_models(results):
        return
    models = models_at_paper_config(results)
    if models:
        report.tables["models"] = models_table(models)
    else:
        report.notes.append("Models side by side: no rows at the paper's configuration (batch 4, 5.5 s, fp32)")


def _recipes(measured: list[ResultRecord], report: Report) -> None:
    """The recipes table and the memory-against-time plot, when a configuration was measured under several."""
    from w2vprof.report.recipes import memory_time_caption, memory_time_png, recipes_table

    table = recipes_table(measured)
    if table is None:
        return
    report.tables["recipes"] = table
    _add(report, "recipes_memory_vs_time.png", memory_time_png(measured), memory_time_caption(measured))


def _add(report: Report, name: str, png: Optional[bytes], caption: str) -> None:
    if png:
        report.figures[name] = png
        report.captions[name] = caption


def _figure2(inputs: ReportInputs, report: Report) -> None:
    index = _pick_layer_config(inputs)
    if index is None:
        report.notes.append("No per-layer files among the inputs: Fig. 2 plots skipped")
        return
    r = inputs.results[index]
    label = f"{r.model}, batch {r.batch}, {r.seconds:g} s, {r.precision}, {device_label(r)}"
    layers = inputs.layers[index]
    _add(
        report,
        "fig2_activation_memory.png",
        plots.layer_memory_png(layers, f"Activation memory per layer ({label})"),
        f"Fig. 2 left: activation memory saved for backward by each layer (bars, MB) and its running total "
        f"through the forward pass (line, GB), {label}",
    )
    _add(
        report,
        "fig2_flops.png",
        plots.layer_flops_png(layers, f"FLOPs per layer ({label})"),
        f"Fig. 2 right: forward and backward GFLOPs per layer in one training step, {label}",
    )
    _layer_time_figures(inputs, index, report)


def _config_label(record: ResultRecord) -> str:
    return f"{record.model}, batch {record.batch}, {record.seconds:g} s, {record.precision}, {device_label(record)}"


def _layer_time_figures(inputs: ReportInputs, fig2_index: int, report: Report) -> None:
    """Fig. 2's time panel, the per-layer roofline and the table of seconds per layer, for Fig. 2's configuration
    when its layer rows have times, else for the best one that has them; a note when none has."""
    index = (
        fig2_index
        if any(row.sec is not None for row in inputs.layers[fig2_index])
        else _pick_layer_config(inputs, timed=True)
    )
    if index is None:
        report.notes.append(
            "No seconds per layer in the per-layer files (profile measures them; a sweep with "
            "--layer-repeats N): the time panel and the roofline skipped"
        )
        return
    record, layers = inputs.results[index], inputs.layers[index]
    label = _config_label(record)
    if index != fig2_index:
        report.notes.append(f"Seconds per layer shown for {label}: Fig. 2's configuration has none")
    peak = _compute_ceiling(record)
    _add(
        report,
        "fig2_time.png",
        plots.layer_time_png(layers, f"Seconds per layer ({label})"),
        f"Fig. 2, time: forward and backward seconds per layer in one training step, and the rest of the step "
        f"(optimizer, glue), medians over the extra steps, {label}",
    )
    ceilings = (
        "under this device's measured matmul and copy ceilings"
        if peak and record.mem_bw_measured
        else "(no calibration in the results, so no measured ceiling: run w2vprof devices --calibrate)"
    )
    _add(
        report,
        "roofline_layers.png",
        plots.layer_roofline_png(
            roofline_points(layers, record), peak, record.mem_bw_measured, f"Per-layer roofline ({label})"
        ),
        f"Each layer's achieved FLOP/s (forward + backward) against its FLOPs per byte of inputs, outputs and "
        f"weights, {ceilings}; layers far below the sloped line's reach are bound by memory traffic, {label}",
    )
    table = layer_times_table(layers, label, peak)
    if table is not None:
        report.tables["layer_times"] = table


def _compute_ceiling(record: ResultRecord) -> Optional[float]:
    """The measured matmul rate in the precision the configuration trained in (fp32 where mixed is missing)."""
    if record.precision == "mixed" and record.peak_flops_mixed_measured:
        return record.peak_flops_mixed_measured
    return record.peak_flops_fp32_measured


def roofline_points(layers: list[LayerRecord], record: ResultRecord) -> list[plots.RooflinePoint]:
    """One point per timed layer with FLOPs: FLOPs (forward + backward, recomputation included) per byte of its
    inputs and outputs (io_bytes) and weights (params x bytes per parameter, from the record's param_bytes)."""
    params = sum(row.params for row in layers)
    bytes_per_param = record.param_bytes / params if record.param_bytes and params else 4.0
    points = []
    for row in layers:
        flops = row.fwd_flops + row.bwd_flops + getattr(row, "recompute_flops", 0)
        traffic = (row.io_bytes or 0) + row.params * bytes_per_param
        if flops and row.sec and traffic:
            points.append(plots.RooflinePoint(row.layer, row.kind, flops / traffic, flops / row.sec))
    return points


#: Fig. 3 and the time plot: (series key, file, y label, y unit, title, caption).
_VERSUS_SECONDS = (
    (
        "memory",
        "fig3_memory_vs_seconds.png",
        "memory (GB)",
        "GB",
        "Training memory vs utterance length",
        "Fig. 3: training memory against utterance length (activations saved for backward, and the measured peak)",
    ),
    (
        "FLOPs",
        "fig3_flops_vs_seconds.png",
        "TFLOPs per training step",
        "TFLOPs",
        "Training FLOPs vs utterance length",
        "Fig. 3: FLOPs of one training step (forward + backward + optimizer) against utterance length",
    ),
    (
        "time",
        "time_vs_seconds.png",
        "seconds per batch",
        "s",
        "Seconds per batch vs utterance length",
        "Seconds per training step against utterance length",
    ),
)


def _length_figures(measured: list[ResultRecord], report: Report) -> None:
    """Fig. 3 (memory and FLOPs vs length), Fig. 4 (FP32 vs mixed memory) and seconds per batch vs length."""
    ok = [r for r in latest_by_config(measured).values() if r.status == "ok"]
    if not ok:
        report.notes.append("No measured ok rows: Figs. 3-4 and the time plot skipped")
        return
    # The paper plots batch 4; otherwise the batch measured at the most lengths.
    lengths_at = {b: len({length_key(r.seconds) for r in ok if r.batch == b}) for b in {r.batch for r in ok}}
    batch = 4 if lengths_at.get(4, 0) >= 2 else max(lengths_at, key=lambda b: (lengths_at[b], b))
    if lengths_at[batch] < 2:
        report.notes.append("Fewer than two utterance lengths at any batch: Figs. 3-4 and the time plot skipped")
        return
    at_batch = [r for r in ok if r.batch == batch]
    series = _series_against_seconds(at_batch)
    for key, png_name, ylabel, unit, title, what in _VERSUS_SECONDS:
        png = plots.versus_seconds_png(series[key], ylabel, f"{title} (batch {batch})", unit)
        if png:
            _add(report, png_name, png, f"{what}, batch {batch}, with least-squares lines")
        else:
            report.notes.append(f"No {key} in the measured rows at batch {batch}: {png_name} skipped")
    for model in sorted({r.model for r in at_batch}):
        _figure4(model, [r for r in at_batch if r.model == model], batch, report)


def _series_against_seconds(rows: list[ResultRecord]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """(seconds, value) points per curve of each length plot: memory (GB), FLOPs (TFLOPs), time (s per batch)."""
    series: dict[str, dict[str, list[tuple[float, float]]]] = {"memory": {}, "FLOPs": {}, "time": {}}
    several_devices = len({device_label(r) for r in rows}) > 1
    for r in rows:
        name = f"{r.model} {r.precision}"
        device_name = name + (f" {device_label(r)}" if several_devices else "")
        points = (
            ("memory", device_name + " activations", r.act_mem_bytes, 1e9),
            ("memory", device_name + f" peak ({r.peak_mem_source or 'peak'})", r.peak_mem_bytes, 1e9),
            ("FLOPs", name, r.train_flops, 1e12),
            ("time", f"{name} {device_label(r)}", sec_per_batch(r), 1),
        )
        for key, curve, value, scale in points:
            if value is not None:
                series[key].setdefault(curve, []).append((r.seconds, value / scale))
    # FLOPs do not depend on the device: one point per model, precision and length.
    series["FLOPs"] = {curve: sorted(set(points)) for curve, points in series["FLOPs"].items()}
    return series


def _figure4(model: str, rows: list[ResultRecord], batch: int, report: Report) -> None:
    """Fig. 4 for one model: the memory a step holds (activations + parameters + gradients + optimizer state)."""
    by_precision: dict[str, dict[float, float]] = {}
    for r in rows:
        parts = (r.act_mem_bytes, r.param_bytes, r.grad_bytes, r.optim_state_bytes)
        if all(p is not None for p in parts):
            by_precision.setdefault(r.precision, {})[r.seconds] = sum(p for p in parts if p is not None)
    png = plots.fp32_vs_mixed_png(by_precision, f"{model}: FP32 vs mixed precision memory, batch {batch}")
    if png:
        _add(
            report,
            f"fig4_{model}_fp32_vs_mixed.png",
            png,
            f"Fig. 4: {model}, memory per utterance length with FP32 and mixed precision (activations + "
            f"parameters + gradients + optimizer state), batch {batch}",
        )
    else:
        report.notes.append(f"{model}: no FP32 and mixed pair at batch {batch}: Fig. 4 skipped")
