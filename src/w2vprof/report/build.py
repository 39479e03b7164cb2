"""A report from results files: tables and plots as data (name -> bytes), never measuring anything."""
from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from w2vprof.analysis.data import device_label, latest_by_config
from w2vprof.errors import BadInput
from w2vprof.records import LayerRecord, ModuleSummaryRow, ResultRecord, read_layers_csv, read_results_csv
from w2vprof.report import plots
from w2vprof.report.render import Table, table1, table2, table_csv, table_html, table_latex, table_markdown

__all__ = ["ReportInputs", "Report", "load_inputs", "build_report"]


@dataclass
class ReportInputs:
    results: list[ResultRecord] = field(default_factory=list)
    layers: dict[int, list[LayerRecord]] = field(default_factory=dict)  # index in results -> its layer rows
    summaries: list[ModuleSummaryRow] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


@dataclass
class Report:
    tables: dict[str, Table] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG
    notes: list[str] = field(default_factory=list)

    def files(self, latex: bool = False) -> dict[str, bytes]:
        out = {f"{name}.csv": table_csv(t).encode() for name, t in self.tables.items()}
        if latex:
            out.update({f"{name}.tex": table_latex(t).encode() for name, t in self.tables.items()})
        out.update(self.figures)
        out["report.md"] = self.markdown().encode()
        out["report.html"] = self.html().encode()
        return out

    def markdown(self) -> str:
        parts = ["# w2vprof report", ""]
        parts += [f"- {note}" for note in self.notes] + [""]
        for name, table in self.tables.items():
            parts += [table_markdown(table), f"([{name}.csv]({name}.csv))", ""]
        for name in self.figures:
            parts += [f"![{name}]({name})", ""]
        return "\n".join(parts)

    def html(self) -> str:
        from html import escape

        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
                 "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
                 "text-align:right}td:first-child,th:first-child{text-align:left}.caption{color:#666;font-size:90%}"
                 "img{max-width:100%;margin:1em 0}")
        body = ["<h1>w2vprof report</h1><ul>" + "".join(f"<li>{escape(n)}</li>" for n in self.notes) + "</ul>"]
        body += [table_html(t) for t in self.tables.values()]
        body += [f"<h3>{escape(name)}</h3><img alt='{escape(name)}' src='data:image/png;base64,"
                 f"{base64.b64encode(png).decode()}'/>" for name, png in self.figures.items()]
        return f"<!doctype html><html><head><meta charset='utf-8'><title>w2vprof report</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"


def _is_summary(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            header = handle.readline().strip().split(",")
    except (OSError, UnicodeDecodeError):
        return False
    return header == ["model", "module", "params", "inference_flops", "seconds", "batch"]


def _read_summary(path: Path) -> list[ModuleSummaryRow]:
    import csv

    with open(path, encoding="utf-8") as handle:
        try:
            return [ModuleSummaryRow(r["model"], r["module"], int(r["params"]), int(r["inference_flops"]),
                                     float(r["seconds"]), int(r["batch"])) for r in csv.DictReader(handle)]
        except (ValueError, KeyError, TypeError):
            raise BadInput(f"{path}: a summary CSV with a bad row") from None


def load_inputs(paths: list[Path]) -> ReportInputs:
    """Results files (with their per-layer files) and summary CSVs; anything else is BadInput naming it."""
    if not paths:
        raise BadInput("give at least one results CSV (from w2vprof sweep or profile)")
    inputs = ReportInputs()
    for path in paths:
        path = Path(path)
        inputs.sources.append(str(path))
        if _is_summary(path):
            inputs.summaries.extend(_read_summary(path))
            continue
        for record in read_results_csv(path):
            if record.layers_file:
                layer_path = path.parent / record.layers_file
                if layer_path.is_file():
                    inputs.layers[len(inputs.results)] = read_layers_csv(layer_path)
            inputs.results.append(record)
    return inputs


def _pick_layer_config(inputs: ReportInputs) -> Optional[int]:
    """The configuration for Fig. 2: base, batch 4, 5.5 s, fp32 if measured, else the largest one measured."""
    candidates = [i for i in inputs.layers if inputs.results[i].status == "ok"]
    if not candidates:
        return None
    for index in candidates:
        r = inputs.results[index]
        if (r.model, r.batch, r.seconds, r.precision) == ("base", 4, 5.5, "fp32"):
            return index
    return max(candidates, key=lambda i: (inputs.results[i].model != "tiny", inputs.results[i].batch * inputs.results[i].seconds))


def build_report(inputs: ReportInputs, table_seconds: Optional[float] = None) -> Report:
    report = Report()
    report.notes.append("Inputs: " + ", ".join(inputs.sources))
    measured = inputs.results
    if inputs.summaries:
        report.tables["table1"] = table1(inputs.summaries)
    if measured:
        seconds_counts = Counter(round(r.seconds, 3) for r in measured)
        seconds = table_seconds if table_seconds is not None else (5.5 if 5.5 in seconds_counts else seconds_counts.most_common(1)[0][0])
        report.tables["table2"] = table2(measured, seconds)
        report.notes.append(f"Table 2 at {seconds:g} s utterances (the lengths in the data: "
                            + ", ".join(f"{s:g}" for s in sorted(seconds_counts)) + ")")

    index = _pick_layer_config(inputs)
    if index is not None:
        r = inputs.results[index]
        label = f"{r.model}, batch {r.batch}, {r.seconds:g} s, {r.precision}, {device_label(r)}"
        layers = inputs.layers[index]
        report.figures["fig2_activation_memory.png"] = plots.layer_memory_png(layers, f"Activation memory per layer ({label})")
        report.figures["fig2_flops.png"] = plots.layer_flops_png(layers, f"FLOPs per layer ({label})")
    else:
        report.notes.append("No per-layer files: Fig. 2 plots skipped")

    ok = [r for r in latest_by_config(measured).values() if r.status == "ok" and r.source == "measured"]
    batch_counts = Counter(r.batch for r in ok)
    if batch_counts:
        batch = 4 if batch_counts.get(4, 0) >= 2 else batch_counts.most_common(1)[0][0]
        at_batch = [r for r in ok if r.batch == batch]
        memory, flops, times = {}, {}, {}
        for r in at_batch:
            name = f"{r.model} {r.precision}"
            if r.act_mem_bytes is not None:
                memory.setdefault(name + " activations", []).append((r.seconds, r.act_mem_bytes / 1e9))
            if r.peak_mem_bytes is not None:
                memory.setdefault(name + f" peak ({r.peak_mem_source})", []).append((r.seconds, r.peak_mem_bytes / 1e9))
            if r.train_flops is not None:
                flops.setdefault(name, []).append((r.seconds, r.train_flops / 1e12))
            if r.sec_per_batch_median is not None:
                times.setdefault(f"{name} {device_label(r)}", []).append((r.seconds, r.sec_per_batch_median))
        if len({r.seconds for r in at_batch}) >= 2:
            report.figures["fig3_memory_vs_seconds.png"] = plots.versus_seconds_png(
                memory, "memory (GB)", f"Training memory vs utterance length (batch {batch})")
            report.figures["fig3_flops_vs_seconds.png"] = plots.versus_seconds_png(
                flops, "TFLOPs per training step", f"Training FLOPs vs utterance length (batch {batch})")
            report.figures["time_vs_seconds.png"] = plots.versus_seconds_png(
                times, "seconds per batch", f"Seconds per batch vs utterance length (batch {batch})")
            for model in sorted({r.model for r in at_batch}):
                by_precision: dict[str, dict[float, float]] = {}
                for r in at_batch:
                    if r.model == model and r.act_mem_bytes is not None:
                        total = r.act_mem_bytes + (r.param_bytes or 0) + (r.grad_bytes or 0) + (r.optim_state_bytes or 0)
                        by_precision.setdefault(r.precision, {})[r.seconds] = total
                png = plots.fp32_vs_mixed_png(by_precision, f"{model}: FP32 vs mixed precision memory (activations + "
                                                            f"params + grads + optimizer), batch {batch}")
                if png:
                    report.figures[f"fig4_{model}_fp32_vs_mixed.png"] = png
                else:
                    report.notes.append(f"{model}: no FP32 and mixed pair at batch {batch}: Fig. 4 skipped")
        else:
            report.notes.append(f"Fewer than two lengths at batch {batch}: Fig. 3 plots skipped")
    report.figures = {name: png for name, png in report.figures.items() if png}
    return report
