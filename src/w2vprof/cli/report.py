"""`w2vprof report`: results files to report.md, a self-contained report.html, table CSVs and PNG plots."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]


def report_command(
    files: Optional[list[Path]] = typer.Argument(
        None, help="Results CSVs (sweep/profile output) and optionally `w2vprof summary --format csv` files."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the report (created if missing; files replaced)."),
    fmt: str = typer.Option("md", "--format", "-f", help="md (default), or latex: also write every table as .tex."),
    seconds: Optional[str] = typer.Option(None, "--seconds", help="Utterance length of the Table 2 view (default "
                                                                 "5.5 if measured, else the most common)."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Add the paper's devices to Table 2: 'paper'."),
) -> None:
    """Tables like the paper's Tables 1-2 and plots like its Figs. 2-4, from results files only (never measures)."""
    from w2vprof.cli.options import parse_positive_float
    from w2vprof.cli.output import check_format
    from w2vprof.errors import BadInput
    from w2vprof.report.build import build_report, load_inputs
    from w2vprof.report.render import table_terminal

    check_format(fmt, ("md", "latex"))
    length = parse_positive_float(seconds, "--seconds") if seconds is not None else None
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: is a file; give a folder")
    if not out.parent.is_dir():
        raise BadInput(f"--out {out}: folder {out.parent} does not exist")
    report = build_report(load_inputs(list(files or []), reference), length)
    try:
        out.mkdir(exist_ok=True)
        for name, data in report.files(latex=fmt == "latex").items():
            # temp file + rename: a reader never sees half a report file
            tmp = out / (name + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(out / name)
    except OSError as exc:
        raise BadInput(f"--out {out}: cannot write ({exc.strerror})") from None
    if "table2" in report.tables:
        typer.echo(table_terminal(report.tables["table2"]), nl=False)
    for note in report.notes:
        typer.echo(note)
    typer.echo(f"Report: {out / 'report.html'} ({len(report.figures)} plots, {len(report.tables)} tables)")


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
