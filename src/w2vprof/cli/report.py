"""`w2vprof report`: results files to report.md, a self-contained report.html, table CSVs and PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

__all__ = ["register"]


def report_command(
    files: Optional[List[Path]] = typer.Argument(
        None, help="Results CSVs (sweep/profile output) and optionally `w2vprof summary --format csv` files."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the report (created if missing; files replaced)."),
    fmt: str = typer.Option("md", "--format", "-f", help="md (default), or latex: also write every table as .tex."),
    seconds: Optional[str] = typer.Option(
        None, "--seconds", help="Utterance length of the Table 2 view (default 5.5 if measured, else the most common)."
    ),
    reference: Optional[str] = typer.Option(None, "--reference", help="Add the paper's devices to Table 2: 'paper'."),
) -> None:
    """Tables like the paper's Tables 1-2 and plots like its Figs. 2-4, from results files only (never measures)."""
    from w2vprof.cli.options import check_format, parse_positive_float
    from w2vprof.report.build import report_to_folder
    from w2vprof.report.pages import REPORT_FORMATS, console_view
    from w2vprof.report.views import emit

    check_format(fmt, REPORT_FORMATS)
    length = parse_positive_float(seconds, "--seconds") if seconds is not None else None
    emit(console_view(report_to_folder(list(files or []), out, reference, length, fmt), out), "table")


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
