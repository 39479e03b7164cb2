"""Inputs of the read-only commands: results files, the paper's reference results, device profiles.

The reference data lives in the repo-root `devices/` folder and is installed as the package
`w2vprof.reference_data` (see pyproject.toml), so it is read through importlib.resources and works the same
from a source checkout, an editable install and a wheel.
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Iterable, Optional

from w2vprof.errors import BadInput, SettingError
from w2vprof.records import DEFAULT_RECIPE, ResultRecord, length_key, read_results_csv, recipe_of, replace

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
    "PAPER_SECONDS",
]

#: The paper's average utterance (CommonVoice Italian): preferred when rows exist at several lengths.
PAPER_SECONDS = 5.5

REFERENCE_PACKAGE = "w2vprof.reference_data"
#: --reference NAME -> shipped results file.
REFERENCES = {"paper": "paper_table2.csv"}


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    device_class: str
    memory_gb: Optional[float]  # GB = 1e9 bytes, as vendors state it
    unified_memory: bool  # CPU and accelerator share it (Jetson, Pi, Apple)
    peak_fp32_tflops: Optional[float]
    peak_fp16_tflops: Optional[float]
    mixed_precision: bool  # the device can train with FP16/BF16 autocast
    source: str


def paper_results() -> list[ResultRecord]:
    """The paper's Table 2 (source=paper), shipped with the package."""
    return reference_results("paper")


def reference_results(name: str) -> list[ResultRecord]:
    """A shipped reference results file by its name (the `reference` setting: paper)."""
    if name not in REFERENCES:
        raise SettingError.unknown("reference", name, REFERENCES)
    with shipped_file(REFERENCES[name]) as path:
        return read_results_csv(path)


def shipped_file(name: str) -> ContextManager[Path]:
    """A real path to one of the package's reference files, even when the package is imported from a zip."""
    if sys.version_info >= (3, 9):
        from importlib.resources import as_file, files  # novermin - the branch for 3.9+

        return as_file(files(REFERENCE_PACKAGE).joinpath(name))
    from importlib.resources import path  # Python 3.8 (deprecated from 3.11, so not used there)

    return path(REFERENCE_PACKAGE, name)


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


def latest_by_config(rows: Iterable[ResultRecord], recipes: bool = False) -> dict[tuple[Any, ...], ResultRecord]:
    """One row per (device, model, batch, seconds, precision): the last one wins (a later rerun or --resume).

    Only rows of the default training recipe: every analysis of the plain training step (Table 2, compare,
    feasibility, fl-estimate, forecast) leaves rows that checkpoint, freeze, accumulate, ... out. `recipes`: rows of
    every recipe, keyed by (device, model, batch, seconds, precision, recipe).
    """
    chosen: dict[tuple[Any, ...], ResultRecord] = {}
    for row in rows:
        key = (device_label(row), row.model, row.batch, length_key(row.seconds), row.precision)
        if recipes:
            chosen[key + (recipe_of(row),)] = row
        elif recipe_of(row) == DEFAULT_RECIPE:
            chosen[key] = row
    return chosen


def _float(text: Optional[str]) -> Optional[float]:
    text = (text or "").strip()
    return float(text) if text else None


def load_profiles(path: Optional[Path] = None) -> list[DeviceProfile]:
    """Device profiles: the shipped ones, or a CSV (or a folder holding profiles.csv) with the same columns."""
    if path is None:
        with shipped_file("profiles.csv") as shipped:
            text = shipped.read_text(encoding="utf-8")
        name = "profiles.csv (shipped)"
    else:
        path = Path(path)
        if path.is_dir():
            path = path / "profiles.csv"
        try:
            text, name = path.read_text(encoding="utf-8-sig"), str(path)  # utf-8-sig: a BOM from Excel is fine
        except FileNotFoundError:
            raise BadInput(f"{path}: no such device profiles file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"{path}: cannot read device profiles ({getattr(exc, 'strerror', None) or exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    if not {"name", "memory_gb"} <= set(reader.fieldnames or []):
        raise BadInput(f"{name}: not a device profiles file (needs columns name, memory_gb)")
    profiles = []
    for line_no, row in enumerate(reader, start=2):
        try:
            profiles.append(
                DeviceProfile(
                    name=row["name"],
                    device_class=row.get("class") or "",
                    memory_gb=_float(row.get("memory_gb")),
                    unified_memory=(row.get("unified_memory") or "").strip().lower() == "true",
                    peak_fp32_tflops=_float(row.get("peak_fp32_tflops")),
                    peak_fp16_tflops=_float(row.get("peak_fp16_tflops")),
                    mixed_precision=(row.get("mixed_precision") or "true").strip().lower() != "false",
                    source=row.get("source") or "",
                )
            )
        except ValueError:
            raise BadInput(f"{name}: line {line_no} ({row.get('name')!r}) has a value that is not a number") from None
    return profiles


def find_profile(profiles: list[DeviceProfile], name: str) -> DeviceProfile:
    for profile in profiles:
        if profile.name == name:
            return profile
    raise BadInput(f"unknown device {name!r}; known: {', '.join(p.name for p in profiles)}")
