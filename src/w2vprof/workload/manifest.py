"""Common Voice style TSV manifests: `client_id`, `path`, `sentence` (and any other columns, kept as they are).

Clips are resolved relative to a clips folder: the one given, else the manifest's sibling `clips/`.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from w2vprof.errors import BadInput
from w2vprof.files import read_text, strip_bom

__all__ = ["Manifest", "read_manifest", "manifest_text"]


@dataclass
class Manifest:
    path: Path
    columns: list[str]
    rows: list[dict[str, str]]
    clips_dir: Path

    def clip_path(self, row: dict[str, str]) -> Path:
        clip = Path(row["path"])
        return clip if clip.is_absolute() else self.clips_dir / clip


def read_manifest(path: Union[str, Path], clips_dir: Optional[Union[str, Path]] = None) -> Manifest:
    """Read a TSV manifest; BadInput naming the file when it has no `path` column or a torn line."""
    path = Path(path)
    text = strip_bom(read_text(path, "TSV manifest"))  # a BOM (a manifest saved by Excel) is not part of client_id
    # QUOTE_NONE: Common Voice sentences contain bare quotes, and its own loaders read it this way.
    # newline=None: universal newlines, as Path.read_text gave (a CR or CRLF manifest reads like an LF one).
    reader = csv.reader(io.StringIO(text, newline=None), delimiter="\t", quoting=csv.QUOTE_NONE)
    lines = [line for line in reader if line]
    if not lines:
        raise BadInput(f"{path}: empty manifest (expected a header with client_id, path, sentence)")
    columns = [c.strip() for c in lines[0]]
    if "path" not in columns:
        raise BadInput(f"{path}: not a Common Voice style manifest (no 'path' column in {columns[:6]})")
    rows = []
    for line_no, cells in enumerate(lines[1:], start=2):
        if len(cells) > len(columns):
            raise BadInput(f"{path}: line {line_no} has {len(cells)} cells, the header {len(columns)}")
        cells = cells + [""] * (len(columns) - len(cells))  # trailing empty cells are often dropped
        row = dict(zip(columns, cells))
        if row["path"].strip():
            rows.append(row)
    clips = Path(clips_dir) if clips_dir is not None else path.parent / "clips"
    return Manifest(path=path, columns=columns, rows=rows, clips_dir=clips)


def manifest_text(columns: list[str], rows: list[dict[str, str]]) -> str:
    """The TSV text of `rows` with `columns` (same quoting as Common Voice: none)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        # A tab or newline inside a cell cannot be written unquoted; Common Voice has none, so flatten them.
        writer.writerow([re.sub(r"[\t\r\n]", " ", row.get(c, "")) for c in columns])
    return buffer.getvalue()
