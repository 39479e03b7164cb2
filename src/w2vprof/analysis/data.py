"""Inputs of the read-only commands: results files and the paper's reference results.

Device profiles and the shipped reference files are w2vprof.devices.profiles (calibration reads them too);
`DeviceProfile`, `load_profiles` and `find_profile` are also importable from here while cli/plan.py,
cli/analysis.py and analysis/fleet.py still take them from this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

from w2vprof.devices.profiles import DeviceProfile, find_profile, load_profiles, shipped_file
from w2vprof.errors import SettingError
from w2vprof.records import (
    DEFAULT_OBJECTIVE,
    DEFAULT_RECIPE,
    ResultRecord,
    length_key,
    objective_of,
    read_results_csv,
    recipe_of,
    replace,
)

__all__ = [
    "DeviceProfile",
    "REFERENCES",
    "load_results",
    "paper_results",
    "reference_results",
    "load_profiles",
    "device_label",
    "distinct_device_names",
    "sec_per_batch",
    "find_profile",
    "latest_by_config",
    "objective_of",
    "PRETRAIN_OBJECTIVE",
]

#: The objective of every row written before results had an `objective` column (defined once, in records).
PRETRAIN_OBJECTIVE = DEFAULT_OBJECTIVE

#: --reference NAME -> shipped results file.
REFERENCES = {"paper": "paper_table2.csv"}


def paper_results() -> list[ResultRecord]:
    """The paper's Table 2 (source=paper), shipped with the package."""
    return reference_results("paper")


def reference_results(name: str) -> list[ResultRecord]:
    """A shipped reference results file by its name (the `reference` setting: paper)."""
    if name not in REFERENCES:
        raise SettingError.unknown("reference", name, REFERENCES)
    with shipped_file(REFERENCES[name]) as path:
        return read_results_csv(path)


def load_results(paths: Iterable[Path], reference: Optional[str] = None) -> list[ResultRecord]:
    """Rows of every results file given, plus a shipped reference ('paper') when asked for."""
    rows: list[ResultRecord] = []
    for path in paths:
        rows.extend(read_results_csv(Path(path)))
    if reference is not None:
        rows.extend(reference_results(reference))
    return distinct_device_names(rows)


def distinct_device_names(rows: list[ResultRecord]) -> list[ResultRecord]:
    """Two machines that report the same device_name (two Raspberry Pi 4s) stay two devices in every table:
    the name gets the host (or the fingerprint) in brackets."""
    machines: dict[str, set[str]] = {}
    for row in rows:
        if row.device_name:
            machines.setdefault(row.device_name, set()).add(row.device_fingerprint or row.hostname)
    shared = {name for name, ids in machines.items() if len(ids) > 1}
    if not shared:
        return rows
    return [
        replace(row, device_name=f"{row.device_name} ({row.hostname or row.device_fingerprint[:8]})")
        if row.device_name in shared
        else row
        for row in rows
    ]


def device_label(record: ResultRecord) -> str:
    """The name a row's device goes by in every table: device_name, else the host, else the torch device."""
    return record.device_name or record.hostname or record.device or "unknown device"


def sec_per_batch(record: ResultRecord) -> Optional[float]:
    """Median seconds per batch; the mean where only that is known (the paper publishes averages)."""
    return record.sec_per_batch_median if record.sec_per_batch_median is not None else record.sec_per_batch_mean


def latest_by_config(
    rows: Iterable[ResultRecord], recipes: bool = False, objective: str = PRETRAIN_OBJECTIVE
) -> dict[tuple[Any, ...], ResultRecord]:
    """One row per (device, model, batch, seconds, precision): the last one wins (a later rerun or --resume).

    Only rows of the default training recipe: every analysis of the plain training step (Table 2, compare,
    feasibility, fl-estimate, forecast) leaves rows that checkpoint, freeze, accumulate, ... out. `recipes`: rows of
    every recipe, keyed by (device, model, batch, seconds, precision, recipe). Only rows of one `objective`
    (pretraining unless asked): a CTC fine-tuning row is another measurement of the same configuration.
    """
    chosen: dict[tuple[Any, ...], ResultRecord] = {}
    for row in rows:
        if objective_of(row) != objective:
            continue
        key = (device_label(row), row.model, row.batch, length_key(row.seconds), row.precision)
        if recipes:
            chosen[key + (recipe_of(row),)] = row
        elif recipe_of(row) == DEFAULT_RECIPE:
            chosen[key] = row
    return chosen
