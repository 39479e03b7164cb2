"""Inputs of the read-only commands: results files, the paper's reference results, device profiles."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Iterable, Optional

from w2vprof.errors import BadInput
from w2vprof.records import ResultRecord, read_results_csv

__all__ = [
    "DeviceProfile",
    "load_results",
    "paper_results",
    "load_profiles",
    "device_label",
    "find_profile",
    "latest_by_config",
]

REFERENCE_PACKAGE = "w2vprof.reference_data"


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    device_class: str
    memory_gb: Optional[float]
    unified_memory: bool
    peak_fp32_tflops: Optional[float]
    peak_fp16_tflops: Optional[float]
    mixed_precision: bool
    source: str


def paper_results() -> list[ResultRecord]:
    """The paper's Table 2, shipped with the package (works from an installed wheel)."""
    text = files(REFERENCE_PACKAGE).joinpath("paper_table2.csv").read_text(encoding="utf-8")
    return _read_results_text(text, "paper_table2.csv (shipped)")


def _read_results_text(text: str, name: str) -> list[ResultRecord]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name.split(" ")[0]
        path.write_text(text, encoding="utf-8")
        return read_results_csv(path)


def load_results(paths: Iterable[Path], reference: Optional[str] = None) -> list[ResultRecord]:
    """Rows of every results file given, plus the paper's when reference == 'paper'."""
    rows: list[ResultRecord] = []
    for path in paths:
        rows.extend(read_results_csv(Path(path)))
    if reference is not None:
        if reference != "paper":
            raise BadInput(f"unknown --reference {reference!r}; the only reference is 'paper'")
        rows.extend(paper_results())
    return rows


def device_label(record: ResultRecord) -> str:
    return record.device_name or record.hostname or record.device or "unknown device"


def latest_by_config(rows: Iterable[ResultRecord]) -> dict[tuple, ResultRecord]:
    """One row per (device, model, batch, seconds, precision): the last one wins (a later rerun)."""
    chosen: dict[tuple, ResultRecord] = {}
    for row in rows:
        chosen[(device_label(row), row.model, row.batch, round(row.seconds, 3), row.precision)] = row
    return chosen


def _float(text: str) -> Optional[float]:
    text = (text or "").strip()
    return float(text) if text else None


def load_profiles(path: Optional[Path] = None) -> list[DeviceProfile]:
    """Device profiles: the shipped ones, or a CSV (or a folder holding profiles.csv) of the same columns."""
    if path is None:
        text, name = files(REFERENCE_PACKAGE).joinpath("profiles.csv").read_text(encoding="utf-8"), "profiles.csv"
    else:
        path = Path(path)
        if path.is_dir():
            path = path / "profiles.csv"
        try:
            text, name = path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise BadInput(f"{path}: cannot read device profiles ({exc.strerror})") from None
    reader = csv.DictReader(io.StringIO(text))
    required = {"name", "memory_gb"}
    if not required <= set(reader.fieldnames or []):
        raise BadInput(f"{name}: not a device profiles file (needs columns name, memory_gb)")
    profiles = []
    for row in reader:
        try:
            profiles.append(
                DeviceProfile(
                    name=row["name"],
                    device_class=row.get("class", ""),
                    memory_gb=_float(row.get("memory_gb", "")),
                    unified_memory=row.get("unified_memory", "").lower() == "true",
                    peak_fp32_tflops=_float(row.get("peak_fp32_tflops", "")),
                    peak_fp16_tflops=_float(row.get("peak_fp16_tflops", "")),
                    mixed_precision=row.get("mixed_precision", "true").lower() != "false",
                    source=row.get("source", ""),
                )
            )
        except ValueError as exc:
            raise BadInput(f"{name}: bad number in row {row.get('name')!r} ({exc})") from None
    return profiles


def find_profile(profiles: list[DeviceProfile], name: str) -> DeviceProfile:
    for profile in profiles:
        if profile.name == name:
            return profile
    raise BadInput(f"unknown device {name!r}; known: {', '.join(p.name for p in profiles)}")
