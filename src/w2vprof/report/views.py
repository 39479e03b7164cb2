"""What a command shows, as data (`View`), and the one way it is written out (`emit`).

The pipeline of every read-only command: the command computes a result (w2vprof.analysis, .measure, ...), one
typed function of this package turns it into a `View` (its tables for people, the notes under them, and the
records behind them), and `emit(view, fmt, out)` renders that view as a terminal table, CSV, JSON or Markdown,
to stdout or to a file. `w2vprof report` draws the same `Table`s into report.md and report.html
(w2vprof.report.pages). A new command or column is one view function; nothing in cli/ formats anything.

The command checks `--format` against the view's formats before any work (cli.options.check_format).

- terminal (`table`, or `text` where a command's view is lines rather than tables): the tables (Rich), then one
  line per note; plain (no colour, full width) when written to a file.
- `md`: each table in Markdown, then each note as a paragraph (`html` the same in HTML: report.html's tables).
- `csv`: the records, one line each with every field (w2vprof.records' cells), or the view's own `csv` table
  where a command's CSV is not its records' fields (compare's chosen columns, compare --layers' one column per
  device).
- `json`: the view's `document` where it is more than its records (compare's gains and OOMs, plan's target),
  else the list of records; dataclasses become objects.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from w2vprof.errors import SettingError
from w2vprof.files import write_text_atomic
from w2vprof.records import rows_to_csv_text
from w2vprof.report.render import Table, table_csv, table_html, table_markdown, tables_terminal

__all__ = ["FORMATS", "View", "render", "emit", "write_out", "as_json"]

#: The formats of most views; a view names its own (`View.formats`) where they differ.
FORMATS = ("table", "md", "csv", "json")


@dataclass
class View:
    """One command's output as data: tables for people, notes under them, and the records behind them.

    `records` are the result's rows (dataclasses): the CSV and JSON of most commands. `document` is the JSON where
    a view is more than a list of records; `csv` the CSV where it is not one line per record with all its fields.
    `formats` are the formats this view can be written in (the first is the command's default).
    """

    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    records: Sequence[Any] = ()
    document: Any = None
    csv: Optional[Table] = None
    formats: tuple[str, ...] = FORMATS


def as_json(value: Any) -> Any:
    """`value` with every dataclass in it (at any depth of dicts and lists) as a plain object for json.dumps."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(item) for item in value]
    return value


def _terminal(view: View, plain: bool) -> str:
    return tables_terminal(view.tables, plain=plain, notes=view.notes)


def _markdown(view: View, plain: bool) -> str:
    text = "\n".join(table_markdown(table) for table in view.tables)
    for note in view.notes:  # a paragraph each: a blank line before it, but none at the top
        text += ("\n" if text else "") + f"{note}\n"
    return text


def _html(view: View, plain: bool) -> str:
    from html import escape

    return "".join(table_html(table) for table in view.tables) + "".join(f"<p>{escape(n)}</p>\n" for n in view.notes)


def _csv(view: View, plain: bool) -> str:
    if view.csv is not None:
        return table_csv(view.csv)
    if not view.records:
        return ""
    return rows_to_csv_text(view.records, [f.name for f in fields(view.records[0])])


def _json(view: View, plain: bool) -> str:
    document = view.records if view.document is None else view.document
    return json.dumps(as_json(document), indent=2) + "\n"


#: format -> its renderer (plain: no colour codes, for a file); `text` is the terminal view of a view of lines.
RENDERERS: dict[str, Callable[[View, bool], str]] = {
    "table": _terminal,
    "text": _terminal,
    "md": _markdown,
    "html": _html,
    "csv": _csv,
    "json": _json,
}


def render(view: View, fmt: str, plain: bool = False) -> str:
    """The view as text in `fmt`: a key of RENDERERS (plain: no colour codes, for a file)."""
    return RENDERERS[fmt](view, plain)


def emit(view: View, fmt: str, out: Optional[Path] = None) -> None:
    """Print the view in `fmt`, one of its `formats` (the command checked the user's choice against them first:
    cli.options.check_format), or write it to `out` atomically: plain, and a half-written file is never left."""
    if fmt not in view.formats:
        raise ValueError(f"this view is written as {', '.join(view.formats)}, not {fmt!r}")
    write_out(render(view, fmt, plain=out is not None), out)


def write_out(text: str, out: Optional[Path]) -> None:
    """Print `text`, or write it to `out` atomically (its folder must exist)."""
    if out is None:
        print(text, end="")
        return
    out = Path(out)
    if out.parent and not out.parent.is_dir():
        raise SettingError("out", f"{out}: folder {out.parent} does not exist")
    write_text_atomic(out, text)  # a failed write is DiskWriteError: "<out>: <cause>", exit 2
