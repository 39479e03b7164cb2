"""A report's pages and files: report.md and a self-contained report.html drawn from its tables (each a one-table
view, rendered as every command's view is: w2vprof.report.views), figures and notes; a CSV (and with latex a .tex)
per table; all written into one folder, each file atomically. What `w2vprof report` prints is `console_view`."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

from w2vprof.errors import BadInput
from w2vprof.files import write_bytes_atomic
from w2vprof.report.render import Table, table_csv, table_latex
from w2vprof.report.views import View, render

__all__ = ["REPORT_FORMATS", "Report", "write_report", "check_report_folder", "console_view"]

#: `report --format`: md writes the tables as CSV; latex also as .tex.
REPORT_FORMATS = ("md", "latex")

STYLE = (
    "body{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;"
    "padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
    ".caption{color:#555;font-size:90%}img{max-width:100%;margin:1em 0 .2em}"
)


@dataclass
class Report:
    tables: dict[str, Table] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG
    captions: dict[str, str] = field(default_factory=dict)  # figure file name -> what it shows
    notes: list[str] = field(default_factory=list)

    def files(self, latex: bool = False) -> dict[str, bytes]:
        """Everything the report folder holds, by file name."""
        out = {f"{name}.csv": table_csv(t).encode() for name, t in self.tables.items()}
        if latex:
            out.update({f"{name}.tex": table_latex(t).encode() for name, t in self.tables.items()})
        out.update(self.figures)
        out["report.md"] = self.markdown().encode()
        out["report.html"] = self.html().encode()
        return out

    def markdown(self) -> str:
        parts = ["# w2vprof report", ""] + [f"- {note}" for note in self.notes] + ["", "## Tables", ""]
        for name, table in self.tables.items():
            parts += [render(View(tables=[table]), "md"), f"([{name}.csv]({name}.csv))", ""]
        if self.figures:
            parts += ["## Figures", ""]
        for name in self.figures:
            parts += [f"![{self.captions.get(name, name)}]({name})", "", f"*{self.captions.get(name, name)}*", ""]
        return "\n".join(parts)

    def html(self) -> str:
        """One file, nothing external: the PNGs are embedded as base64 data URIs."""
        from html import escape

        body = [
            "<h1>w2vprof report</h1><ul>" + "".join(f"<li>{escape(n)}</li>" for n in self.notes) + "</ul>",
            "<h2>Tables</h2>",
        ]
        body += [render(View(tables=[t]), "html") for t in self.tables.values()]
        if self.figures:
            body.append("<h2>Figures</h2>")
        for name, png in self.figures.items():
            caption = escape(self.captions.get(name, name))
            body.append(
                f"<figure><img alt='{caption}' src='data:image/png;base64,{base64.b64encode(png).decode()}'/>"
                f"<figcaption class='caption'>{caption} ({escape(name)})</figcaption></figure>"
            )
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>w2vprof report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"
        )


def write_report(report: Report, folder: Path, latex: bool = False) -> Path:
    """Every file of `report` into `folder` (created if its parent exists), each replaced atomically."""
    folder = Path(folder)
    check_report_folder(folder)
    try:
        folder.mkdir(exist_ok=True)
        for name, data in report.files(latex=latex).items():
            write_bytes_atomic(folder / name, data)
    except OSError as exc:
        raise BadInput(f"report folder {folder}: cannot write ({exc.strerror})") from None
    return folder


def check_report_folder(folder: Path) -> None:
    """BadInput, before anything is read or drawn, when `folder` cannot be the report's."""
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"report folder {folder} is a file; give a folder")
    if not folder.parent.is_dir():
        raise BadInput(f"report folder {folder}: folder {folder.parent} does not exist")


def console_view(report: Report, folder: Path) -> View:
    """What `w2vprof report` prints: Table 2 (when there is one), the notes, and where the report is."""
    summary = f"Report: {folder / 'report.html'} ({len(report.figures)} plots, {len(report.tables)} tables)"
    tables = [report.tables["table2"]] if "table2" in report.tables else []
    return View(tables=tables, notes=[*report.notes, summary], formats=("table",))
