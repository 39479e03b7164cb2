"""`w2vprof report`: results files to report.md, a self-contained report.html, table CSVs and PNG plots."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]


def report_command(
    files: list[Path] = typer.Argument(..., help="Results CSVs (sweep/profile) and optionally summary CSVs."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the report (created if missing)."),
    fmt: str = typer.Option("md", "--format", "-f", help="md (default) or latex: also write the tables as .tex."),
    seconds: Optional[str] = typer.Option(None, "--seconds", help="Utterance length for the Table 2 view."),
) -> None:
    """Tables like the paper's Tables 1-2 and plots like Figs. 2-4, from results files only."""
    from w2vprof.cli.options import parse_positive_float
    from w2vprof.cli.output import check_format
    from w2vprof.errors import BadInput
    from w2vprof.report.build import build_report, load_inputs
    from w2vprof.report.render import print_table

    check_format(fmt, ("md", "latex"))
    report = build_report(load_inputs(files), parse_positive_float(seconds, "--seconds") if seconds else None)
    if not out.parent.is_dir():
        raise BadInput(f"--out {out}: folder {out.parent} does not exist")
    try:
        out.mkdir(exist_ok=True)
        for name, data in report.files(latex=fmt == "latex").items():
            tmp = out / (name + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(out / name)
    except OSError as exc:
        raise BadInput(f"--out {out}: cannot write ({exc.strerror})") from None
    if "table2" in report.tables:
        print_table(report.tables["table2"])
    for note in report.notes:
        typer.echo(note)
    typer.echo(f"Report: {out / 'report.html'} ({len(report.figures)} plots, {len(report.tables)} tables)")


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
