"""A report from results files: tables and plots as data (file name -> bytes), never measuring anything.

`load_inputs` reads results CSVs (with the per-layer files they point to), `w2vprof summary` CSVs and federated
run folders; `build_report` turns them into tables and PNGs, skipping (with a note) every plot its data cannot
support; `write_report` puts every file of a report into a folder; `report_to_folder` does all three.
"""

from __future__ import annotations

import base64
import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from w2vprof.analysis.data import (
    device_label,
    distinct_device_names,
    latest_by_config,
    reference_results,
    sec_per_batch,
)
from w2vprof.errors import BadInput, SettingError
from w2vprof.files import write_bytes_atomic
from w2vprof.fl.records import RunCurves, load_run
from w2vprof.records import (
    DEFAULT_RECIPE,
    SUMMARY_RULES,
    LayerRecord,
    ModuleSummaryRow,
    ResultRecord,
    length_key,
    read_layers_csv,
    read_results_csv,
    read_summary_csv,
    recipe_of,
)
from w2vprof.report import plots
from w2vprof.report.layer_tables import layer_times_table
from w2vprof.report.render import Table, table_csv, table_html, table_latex, table_markdown
from w2vprof.report.tables import environment_table, results_table, table1, table2

__all__ = ["ReportInputs", "Report", "load_inputs", "build_report", "write_report", "report_to_folder"]

#: Fig. 2 of the paper: base, batch 4, 5.5 s, FP32.
FIG2_CONFIG = ("base", 4, 5.5, "fp32")


@dataclass
class ReportInputs:
    results: list[ResultRecord] = field(default_factory=list)
    layers: dict[int, list[LayerRecord]] = field(default_factory=dict)  # index in results -> its layer rows
    summaries: list[ModuleSummaryRow] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fl_runs: list[RunCurves] = field(default_factory=list)  # one per federated run folder


@dataclass
class Report:
    tables: dict[str, Table] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG
    captions: dict[str, str] = field(default_factory=dict)  # figure file name -> what it shows
    notes: list[str] = field(default_factory=list)

    def files(self, latex: bool = False) -> dict[str, bytes]:
        """Everything the report folder holds, by file name."""
        out = {f"{name}.csv": table_csv(t).encode() for name, t in self.tables.items()}
        if latex:
            out.update({f"{name}.tex": table_latex(t).encode() for name, t in self.tables.items()})
        out.update(self.figures)
        out["report.md"] = self.markdown().encode()
        out["report.html"] = self.html().encode()
        return out

    def markdown(self) -> str:
        parts = ["# w2vprof report", ""] + [f"- {note}" for note in self.notes] + ["", "## Tables", ""]
        for name, table in self.tables.items():
            parts += [table_markdown(table), f"([{name}.csv]({name}.csv))", ""]
        if self.figures:
            parts += ["## Figures", ""]
        for name in self.figures:
            parts += [f"![{self.captions.get(name, name)}]({name})", "", f"*{self.captions.get(name, name)}*", ""]
        return "\n".join(parts)

    def html(self) -> str:
        """One file, nothing external: the PNGs are embedded as base64 data URIs."""
        from html import escape

        style = (
            "body{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;"
            "padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
            ".caption{color:#555;font-size:90%}img{max-width:100%;margin:1em 0 .2em}"
        )
        body = [
            "<h1>w2vprof report</h1><ul>" + "".join(f"<li>{escape(n)}</li>" for n in self.notes) + "</ul>",
            "<h2>Tables</h2>",
        ]
        body += [table_html(t) for t in self.tables.values()]
        if self.figures:
            body.append("<h2>Figures</h2>")
        for name, png in self.figures.items():
            caption = escape(self.captions.get(name, name))
            body.append(
                f"<figure><img alt='{caption}' src='data:image/png;base64,{base64.b64encode(png).decode()}'/>"
                f"<figcaption class='caption'>{caption} ({escape(name)})</figcaption></figure>"
            )
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>w2vprof report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
        )


def _is_summary(path: Path) -> bool:
    """A `w2vprof summary --format csv` file, recognised by its columns."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:  # -sig: a BOM (as Excel writes) is not a column
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return set(SUMMARY_RULES.required) <= set(header) and "status" not in header


def load_inputs(paths: list[Path], reference: Optional[str] = None) -> ReportInputs:
    """Results files (with their per-layer files) and summary CSVs; anything else is BadInput naming it."""
    if not paths and reference is None:
        raise SettingError(
            "reference", "paper or at least one results CSV (from w2vprof sweep or profile) must be given"
        )
    inputs = ReportInputs()
    for path in map(Path, paths):
        inputs.sources.append(str(path))
        if path.is_dir():  # a federated run folder (w2vprof fl simulate): rounds.csv + clients.csv
            inputs.fl_runs.append(load_run(path))
            continue
        if _is_summary(path):
            inputs.summaries.extend(read_summary_csv(path))
            continue
        for record in read_results_csv(path):
            if record.layers_file:
                layer_path = path.parent / record.layers_file
                if layer_path.is_file():
                    inputs.layers[len(inputs.results)] = read_layers_csv(layer_path)
                else:
                    inputs.notes.append(f"{path}: per-layer file {record.layers_file} is missing")
            inputs.results.append(record)
    if reference is not None:
        inputs.results.extend(reference_results(reference))
        inputs.sources.append(f"--reference {reference} (shipped)")
    # Same order and length: the per-layer index above still holds.
    inputs.results = distinct_device_names(inputs.results)
    return inputs


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
    return (5.5 if 5.5 in counts else (measured or counts).most_common(1)[0][0]), counts


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
    latex: bool = False,
) -> Report:
    """The whole `w2vprof report`: read the inputs, build the report, write it; a bad folder fails first."""
    _check_report_folder(Path(folder))
    report = build_report(load_inputs(paths, reference), table_seconds)
    write_report(report, folder, latex)
    return report


def write_report(report: Report, folder: Path, latex: bool = False) -> Path:
    """Every file of `report` into `folder` (created if its parent exists), each replaced atomically."""
    folder = Path(folder)
    _check_report_folder(folder)
    try:
        folder.mkdir(exist_ok=True)
        for name, data in report.files(latex=latex).items():
            write_bytes_atomic(folder / name, data)
    except OSError as exc:
        raise BadInput(f"report folder {folder}: cannot write ({exc.strerror})") from None
    return folder


def _check_report_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"report folder {folder} is a file; give a folder")
    if not folder.parent.is_dir():
        raise BadInput(f"report folder {folder}: folder {folder.parent} does not exist")


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
    from w2vprof.report.fleet_tables import fleet_mix_table

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
