"""The fleet file (CSV) in, flat rows for CSV / JSON out.

A fleet file has one line per group of identical clients: `device,count` and optionally `availability`,
`uplink_mbps`, `downlink_mbps`. Every value is checked, and a bad one is one BadInput naming the file and line.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, fields, make_dataclass
from pathlib import Path
from typing import Any, Optional

from w2vprof.analysis.data import device_label
from w2vprof.analysis.fleet import FleetDevice, FleetEstimate, FleetFigures
from w2vprof.analysis.fleet_pricing import FleetGroup
from w2vprof.errors import BadInput
from w2vprof.records import ResultRecord

__all__ = ["FLEET_COLUMNS", "REQUIRED_COLUMNS", "read_fleet", "parse_fleet", "FleetRow", "fleet_records"]

REQUIRED_COLUMNS = ("device", "count")
FLEET_COLUMNS = REQUIRED_COLUMNS + ("availability", "uplink_mbps", "downlink_mbps")

#: One CSV / JSON row per fleet line: the line's own columns, then the fleet-wide figures prefixed `fleet_`.
FleetRow = make_dataclass(
    "FleetRow",
    [(f.name, f.type) for f in fields(FleetDevice)] + [(f"fleet_{f.name}", f.type) for f in fields(FleetFigures)],
)


def read_fleet(path: Path, rows: list[ResultRecord]) -> list[FleetGroup]:
    """The fleet file at `path`; device names must be devices of `rows` (as results tables name them)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such fleet file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read the fleet file ({getattr(exc, 'strerror', None) or exc})") from None
    return parse_fleet(text, sorted({device_label(r) for r in rows}), str(path))


def parse_fleet(text: str, known_devices: list[str], name: str = "fleet") -> list[FleetGroup]:
    """Fleet CSV text -> groups; `known_devices`: the device names the results hold."""
    reader = csv.reader(io.StringIO(text))
    header = [cell.strip() for cell in next(reader, [])]
    if not header or header == [""]:
        raise BadInput(f"{name}: empty fleet file; the first line must be the header {','.join(REQUIRED_COLUMNS)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in FLEET_COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        problem = (
            f"missing {', '.join(missing)}"
            if missing
            else f"unknown column {', '.join(map(repr, unknown))}"
            if unknown
            else "a column appears twice"
        )
        raise BadInput(
            f"{name}: not a fleet file ({problem}); columns: {', '.join(FLEET_COLUMNS)} "
            f"({', '.join(REQUIRED_COLUMNS)} required)"
        )
    groups = []
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue  # a blank line
        where = f"{name} line {reader.line_num}"
        if len(cells) != len(header):
            raise BadInput(f"{where}: {len(cells)} cells for {len(header)} columns")
        groups.append(_group(dict(zip(header, (c.strip() for c in cells))), known_devices, where, reader.line_num))
    if not groups:
        raise BadInput(f"{name}: no rows (a fleet needs at least one {','.join(REQUIRED_COLUMNS)} line)")
    return groups


def _group(row: dict[str, str], known_devices: list[str], where: str, line: int) -> FleetGroup:
    device = row["device"]
    if device not in known_devices:
        known = ", ".join(known_devices) if known_devices else "none (give results files or --reference paper)"
        raise BadInput(f"{where}: unknown device {device!r}; devices in the results: {known}")
    try:
        count = int(row["count"])
    except ValueError:
        count = 0
    if count <= 0:
        raise BadInput(f"{where}: count must be a positive whole number, got {row['count']!r}")
    availability = _number(row.get("availability"), where, "availability")
    if availability is not None and not availability <= 1:
        raise BadInput(f"{where}: availability must be in (0, 1] (a fraction of rounds), got {availability:g}")
    return FleetGroup(
        device=device,
        count=count,
        availability=1.0 if availability is None else availability,
        uplink_mbps=_number(row.get("uplink_mbps"), where, "uplink_mbps"),
        downlink_mbps=_number(row.get("downlink_mbps"), where, "downlink_mbps"),
        line=line,
    )


def _number(text: Optional[str], where: str, column: str) -> Optional[float]:
    """A positive finite number, or None for an empty (or absent) cell."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise BadInput(f"{where}: {column} must be a positive number, got {text!r}")
    return value


def fleet_records(estimate: FleetEstimate) -> list[Any]:
    """One flat FleetRow per fleet line (what --format csv / json print)."""
    fleet = {f"fleet_{key}": value for key, value in asdict(estimate.figures).items()}
    return [FleetRow(**asdict(device), **fleet) for device in estimate.devices]
