"""Devices side by side: slowdown against a baseline device, batch-4 gain, mixed-precision speedup, OOMs.

Everything is computed from the rows given (the paper's among them with --reference paper): nothing here
knows a device's numbers. `compare_layers` puts the seconds per layer of two or more devices side by side
(`compare --layers`): which layers slow down most on the smaller device.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from w2vprof.analysis.data import device_label, distinct_device_names, latest_by_config, sec_per_batch
from w2vprof.errors import SettingError
from w2vprof.files import read_csv_rows
from w2vprof.paper import FIG2_CONFIG
from w2vprof.records import LayerRecord, ResultRecord, length_key, read_layers_csv, read_results_csv

__all__ = [
    "CompareRow",
    "BatchGainRow",
    "MixedSpeedupRow",
    "Comparison",
    "compare",
    "LayerSet",
    "LayerCompareRow",
    "LayerComparison",
    "load_layer_sets",
    "compare_layers",
]


@dataclass
class CompareRow:
    device: str
    model: str
    batch: int
    precision: str
    sec_per_batch: Optional[float]
    status: str
    slowdown_vs_baseline: Optional[float]
    seconds: float
    sec_per_sequence: Optional[float]
    source: str


@dataclass
class BatchGainRow:
    device: str
    model: str
    precision: str
    seconds: float
    sec_per_sequence_small: float
    sec_per_sequence_large: float
    batch_small: int
    batch_large: int
    per_sequence_gain: float  # 1 - per-sequence time at the large batch / at the small batch


@dataclass
class MixedSpeedupRow:
    device: str
    model: str
    batch: int
    seconds: float
    fp32_sec_per_batch: float
    mixed_sec_per_batch: float
    mixed_speedup: float  # fp32 time / mixed time


@dataclass
class Comparison:
    baseline: Optional[str]
    rows: list[CompareRow]
    batch_gains: list[BatchGainRow]
    mixed_speedups: list[MixedSpeedupRow]

    @property
    def ooms(self) -> list[CompareRow]:
        return [r for r in self.rows if r.status == "oom"]


def compare(rows: list[ResultRecord], baseline: Optional[str] = None, seconds: Optional[float] = None) -> Comparison:
    if not rows:
        raise SettingError("reference", "paper or results files are needed: there are no results to compare")
    if seconds is not None:
        rows = [r for r in rows if length_key(r.seconds) == length_key(seconds)]
        if not rows:
            raise SettingError("seconds", f"{seconds:g}: no results at that length")
    latest = latest_by_config(rows)
    devices = list(dict.fromkeys(key[0] for key in latest))
    if baseline is not None and baseline not in devices:
        raise SettingError("baseline", f"device {baseline!r} is unknown; devices in the data: {', '.join(devices)}")

    baseline_time = {
        key[1:]: sec_per_batch(record) for key, record in latest.items() if key[0] == baseline and record.status == "ok"
    }
    compare_rows = []
    for key, record in latest.items():
        time = sec_per_batch(record) if record.status == "ok" else None
        base = baseline_time.get(key[1:])
        compare_rows.append(
            CompareRow(
                device=key[0],
                model=record.model,
                batch=record.batch,
                precision=record.precision,
                sec_per_batch=time,
                status=record.status,
                slowdown_vs_baseline=(time / base) if (time is not None and base) else None,
                seconds=record.seconds,
                sec_per_sequence=(time / record.batch) if time is not None else None,
                source=record.source,
            )
        )
    compare_rows.sort(key=lambda r: (devices.index(r.device), r.model, r.seconds, r.batch, r.precision != "fp32"))
    return Comparison(baseline, compare_rows, _batch_gains(compare_rows), _mixed_speedups(compare_rows))


def _batch_gains(rows: list[CompareRow]) -> list[BatchGainRow]:
    """Per device, model, precision and length: the smallest batch against each larger one measured."""
    # (device, model, precision, seconds) -> (batch, seconds per sequence) of each measured row
    groups: dict[tuple[str, str, str, float], list[tuple[int, float]]] = {}
    for row in rows:
        if row.sec_per_sequence is not None:
            groups.setdefault((row.device, row.model, row.precision, row.seconds), []).append(
                (row.batch, row.sec_per_sequence)
            )
    gains = []
    for (device, model, precision, seconds), members in groups.items():
        members.sort()
        (small_batch, small), larger = members[0], members[1:]
        for large_batch, large in larger:
            gains.append(
                BatchGainRow(
                    device, model, precision, seconds, small, large, small_batch, large_batch, 1 - large / small
                )
            )
    return gains


def _mixed_speedups(rows: list[CompareRow]) -> list[MixedSpeedupRow]:
    by_key = {(r.device, r.model, r.batch, r.seconds, r.precision): r for r in rows}
    speedups = []
    for (device, model, batch, seconds, precision), row in by_key.items():
        if precision != "fp32" or row.sec_per_batch is None:
            continue
        mixed = by_key.get((device, model, batch, seconds, "mixed"))
        if mixed is not None and mixed.sec_per_batch:
            speedups.append(
                MixedSpeedupRow(
                    device,
                    model,
                    batch,
                    seconds,
                    row.sec_per_batch,
                    mixed.sec_per_batch,
                    row.sec_per_batch / mixed.sec_per_batch,
                )
            )
    return speedups


# -- compare --layers: the time per layer of two or more devices ---------------------------------------------------
@dataclass
class LayerSet:
    """One device's layer rows with times, for one configuration."""

    label: str  # the device's name in the comparison (unique)
    source: str  # the file the rows came from
    config: Optional[tuple[str, int, float, str]]  # (model, batch, seconds, precision); None: a bare layers file
    rows: list[LayerRecord]

    @property
    def total_sec(self) -> float:
        return sum(row.sec or 0.0 for row in self.rows)


@dataclass
class LayerCompareRow:
    layer: str
    kind: str
    sec: dict[str, Optional[float]]  # device -> seconds per step on this row (fwd + bwd; `other`: its time)
    share: dict[str, Optional[float]]  # device -> the row's share of that device's step
    ratio: dict[str, Optional[float]]  # device -> its seconds over the baseline's (every device but the baseline)


@dataclass
class LayerComparison:
    devices: list[str]  # the baseline first, then fastest to slowest
    baseline: str  # the fastest device (smallest step as the rows tell it), or the one asked for
    slowest: str  # the slowest device other than the baseline
    config: str  # which configuration, in words
    rows: list[LayerCompareRow]  # sorted: the layer slowing down most on the slowest device first
    total: LayerCompareRow  # the rows' sum per device
    notes: list[str] = field(default_factory=list)


def load_layer_sets(paths: list[Path]) -> tuple[list[LayerSet], list[str]]:
    """Layer sets from layers files (profile's layers.csv, a sweep's <slug>.csv) and from results files whose
    rows' `layers_file` point at them; (sets, notes on what was left out and why). BadInput for a file that is
    neither."""
    sets: list[LayerSet] = []
    notes: list[str] = []
    results: list[tuple[Path, ResultRecord]] = []
    for path in map(Path, paths):
        header, _ = read_csv_rows(path, what="layers or results")
        if "layer" in header and "status" not in header:
            sets.append(LayerSet(_folder_label(path), str(path), None, read_layers_csv(path)))
        else:
            results.extend((path, record) for record in read_results_csv(path))
    named = distinct_device_names([record for _, record in results])
    for (path, _), record in zip(results, named):
        if record.status != "ok" or not record.layers_file:
            continue
        layer_path = path.parent / record.layers_file
        if not layer_path.is_file():
            notes.append(f"{path}: per-layer file {record.layers_file} is missing")
            continue
        config = (record.model, record.batch, length_key(record.seconds), record.precision)
        sets.append(LayerSet(device_label(record), str(layer_path), config, read_layers_csv(layer_path)))
    timed = [s for s in sets if any(row.sec is not None for row in s.rows)]
    notes += [f"{s.source}: no seconds per layer (profile them with --layer-repeats)" for s in sets if s not in timed]
    return timed, notes


def _folder_label(path: Path) -> str:
    """A bare layers file goes by its folder's name (a profile's --out), else its own name."""
    return path.parent.name if path.name == "layers.csv" and path.parent.name else path.stem


def compare_layers(
    sets: list[LayerSet],
    seconds: Optional[float] = None,
    notes: Optional[list[str]] = None,
    baseline: Optional[str] = None,
) -> LayerComparison:
    """Seconds per layer side by side for the configuration measured on the most devices; each row's ratio is
    the device's seconds over the baseline's (the fastest device unless `baseline` names one), and the rows are
    sorted by that ratio on the slowest device."""
    notes = list(notes or [])
    if seconds is not None:
        sets = [s for s in sets if s.config is None or s.config[2] == length_key(seconds)]
    chosen, config = _choose_configuration(sets)
    if len(chosen) < 2:
        raise SettingError(
            "layers",
            "needs seconds per layer from at least two devices for one configuration "
            f"(found {len(chosen)}: {', '.join(s.label for s in chosen) or 'none'})",
        )
    ordered = sorted(chosen, key=lambda s: s.total_sec)
    if baseline is not None:
        labels = [s.label for s in ordered]
        if baseline not in labels:
            raise SettingError(
                "baseline", f"device {baseline!r} is unknown; devices with layer times: {', '.join(labels)}"
            )
        ordered.insert(0, ordered.pop(labels.index(baseline)))
    slowest = max(ordered[1:], key=lambda s: s.total_sec)
    baseline_set = ordered[0]
    names = list(dict.fromkeys(row.layer for s in ordered for row in s.rows if row.sec is not None))
    rows = [_compare_row(name, ordered) for name in names]
    rows.sort(key=lambda r: (r.ratio.get(slowest.label) is None, -(r.ratio.get(slowest.label) or 0.0)))
    total = LayerCompareRow(
        "step (rows' sum)",
        "",
        {s.label: s.total_sec for s in ordered},
        {s.label: 1.0 for s in ordered},
        {s.label: _ratio(s.total_sec, baseline_set.total_sec) for s in ordered[1:]},
    )
    return LayerComparison([s.label for s in ordered], baseline_set.label, slowest.label, config, rows, total, notes)


def _choose_configuration(sets: list[LayerSet]) -> tuple[list[LayerSet], str]:
    """(one set per device, the configuration in words): the configuration with the most devices (the paper's
    Fig. 2 configuration on a tie, then the largest), bare layers files joining it; a device's last set wins."""
    configs = {s.config for s in sets if s.config is not None}

    def devices_at(config: Optional[tuple[str, int, float, str]]) -> dict[str, LayerSet]:
        chosen: dict[str, LayerSet] = {}
        for s in sets:
            if s.config is None or s.config == config:
                chosen[_unique_label(s, chosen)] = s
        return chosen

    if not configs:
        chosen = devices_at(None)
        return [replace(s, label=label) for label, s in chosen.items()], "layers files as given"
    best = max(configs, key=lambda c: (len(devices_at(c)), c == FIG2_CONFIG, c[1] * c[2]))
    chosen = devices_at(best)
    model, batch, seconds, precision = best
    return (
        [replace(s, label=label) for label, s in chosen.items()],
        f"{model}, batch {batch}, {seconds:g} s, {precision}",
    )


def _unique_label(layer_set: LayerSet, taken: dict[str, LayerSet]) -> str:
    """A device measured twice keeps its last set (a rerun); two bare files of one name get their paths."""
    label = layer_set.label
    if label in taken and (layer_set.config is None or taken[label].config is None):
        return layer_set.source
    return label


def _compare_row(name: str, ordered: list[LayerSet]) -> LayerCompareRow:
    found = {s.label: next((row for row in s.rows if row.layer == name), None) for s in ordered}
    sec = {label: row.sec if row is not None else None for label, row in found.items()}
    share = {label: row.time_share if row is not None else None for label, row in found.items()}
    kind = next((row.kind for row in found.values() if row is not None), "")
    base = sec[ordered[0].label]
    return LayerCompareRow(name, kind, sec, share, {s.label: _ratio(sec[s.label], base) for s in ordered[1:]})


def _ratio(value: Optional[float], base: Optional[float]) -> Optional[float]:
    return value / base if value is not None and base else None
