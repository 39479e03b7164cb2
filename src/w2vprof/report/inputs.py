"""A report's inputs: results CSVs (with the per-layer files their rows point to), `w2vprof summary --format csv`
files and federated run folders, each recognised by what it holds; anything else is BadInput naming it."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from w2vprof.analysis.data import distinct_device_names, reference_results
from w2vprof.errors import SettingError
from w2vprof.fl.records import RunCurves, load_run
from w2vprof.records import (
    SUMMARY_RULES,
    LayerRecord,
    ModuleSummaryRow,
    ResultRecord,
    read_layers_csv,
    read_results_csv,
    read_summary_csv,
)

__all__ = ["ReportInputs", "load_inputs"]


@dataclass
class ReportInputs:
    results: list[ResultRecord] = field(default_factory=list)
    layers: dict[int, list[LayerRecord]] = field(default_factory=dict)  # index in results -> its layer rows
    summaries: list[ModuleSummaryRow] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fl_runs: list[RunCurves] = field(default_factory=list)  # one per federated run folder


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
