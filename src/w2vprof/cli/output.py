"""Writing command output: tables to the terminal, CSV/JSON to stdout or a file (written atomically)."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Optional

from w2vprof.errors import BadInput
from w2vprof.files import write_text_atomic
from w2vprof.records import rows_to_csv_text

__all__ = ["FORMATS", "check_format", "records_as_csv", "records_as_json", "emit"]

FORMATS = ("table", "csv", "json")


def check_format(fmt: str, allowed: tuple[str, ...] = FORMATS) -> str:
    if fmt not in allowed:
        raise BadInput(f"unknown --format {fmt!r}; choose from {', '.join(allowed)}")
    return fmt


def records_as_csv(records: list[Any]) -> str:
    if not records:
        return ""
    return rows_to_csv_text(records, [f.name for f in fields(records[0])])


def records_as_json(records: list[Any]) -> str:
    return json.dumps([asdict(r) for r in records], indent=2) + "\n"


def emit(text: str, out: Optional[Path]) -> None:
    """Print `text`, or write it to `out` atomically (a half-written file is never left behind)."""
    if out is None:
        print(text, end="")
        return
    out = Path(out)
    if out.parent and not out.parent.is_dir():
        raise BadInput(f"--out {out}: folder {out.parent} does not exist")
    write_text_atomic(out, text)  # a failed write is DiskWriteError: "<out>: <cause>", exit 2
