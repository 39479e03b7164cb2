"""`w2vprof doctor`: what works here, as plain text to paste into a bug report, or as JSON."""

from __future__ import annotations

import typer

__all__ = ["register"]


def doctor_command(
    fmt: str = typer.Option("text", "--format", "-f", help="text (to paste into a bug report) or json."),
) -> None:
    """What works here: versions, devices and precisions, peak memory, telemetry, one timed training step."""
    from w2vprof.cli.options import check_format
    from w2vprof.doctor import diagnose
    from w2vprof.report.machine_views import DOCTOR_FORMATS, doctor_view
    from w2vprof.report.views import emit

    check_format(fmt, DOCTOR_FORMATS)
    emit(doctor_view(diagnose().to_dict()), fmt)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor_command)
