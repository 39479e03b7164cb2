"""Device profiles (memory, peak FLOP/s, mixed precision) and the reference files shipped beside them.

The reference data lives in the repo-root `devices/` folder and is installed as the package
`w2vprof.reference_data` (see pyproject.toml), so it is read through importlib.resources and works the same
from a source checkout, an editable install and a wheel. Here, below the analyses, because calibration names the
shipped profile of the machine it measures (devices.calibrate.matching_profile) and the analyses read profiles too.
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager, Optional

from w2vprof.errors import BadInput

__all__ = ["REFERENCE_PACKAGE", "DeviceProfile", "shipped_file", "load_profiles", "find_profile"]

REFERENCE_PACKAGE = "w2vprof.reference_data"


@dataclass(frozen=True)
class DeviceProfile:
    """One row of profiles.csv: a device the analyses can place a model on."""

    name: str
    device_class: str
    memory_gb: Optional[float]  # GB = 1e9 bytes, as vendors state it
    unified_memory: bool  # CPU and accelerator share it (Jetson, Pi, Apple)
    peak_fp32_tflops: Optional[float]
    peak_fp16_tflops: Optional[float]
    mixed_precision: bool  # the device can train with FP16/BF16 autocast
    source: str


def shipped_file(name: str) -> ContextManager[Path]:
    """A real path to one of the package's reference files, even when the package is imported from a zip."""
    if sys.version_info >= (3, 9):
        from importlib.resources import as_file, files  # novermin - the branch for 3.9+

        return as_file(files(REFERENCE_PACKAGE).joinpath(name))
    from importlib.resources import path  # Python 3.8 (deprecated from 3.11, so not used there)

    return path(REFERENCE_PACKAGE, name)


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
    """The profile named `name`; BadInput listing the known names otherwise."""
    for profile in profiles:
        if profile.name == name:
            return profile
    raise BadInput(f"unknown device {name!r}; known: {', '.join(p.name for p in profiles)}")
