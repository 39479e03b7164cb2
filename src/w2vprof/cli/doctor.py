"""`w2vprof doctor`: what works here, as plain text to paste into a bug report, or as JSON."""

from __future__ import annotations

import json
from typing import Any

import typer

__all__ = ["register", "render_text"]

MARKS = {"ok": "ok", "no": "NO", "failed": "FAILED"}
TITLES = {
    "install": "Install",
    "devices": "Devices (a small training step on each)",
    "precisions": "Precisions (autocast, backward, scaler, AdamW step on one layer)",
    "peak_memory": "Peak memory (read as a profile reads it)",
    "telemetry": "Telemetry sources",
    "training_step": "Training step (the profiler's step, timed after one warm-up)",
}


def _key_values(title: str, values: dict[str, str]) -> list[str]:
    width = max(len(key) for key in values)
    return [title] + [f"  {key.ljust(width)}  {value}" for key, value in values.items() if value != ""]


def _checks(title: str, checks: list[dict[str, Any]]) -> list[str]:
    if not checks:
        return [title, "  (nothing to try: no device can train here)"]
    width = max(len(check["name"]) for check in checks)
    return [title] + [
        f"  {check['name'].ljust(width)}  {MARKS.get(check['status'], check['status']):6}  {check['detail']}"
        for check in checks
    ]


def render_text(report: dict[str, Any]) -> str:
    """Plain text (no colours, no box drawing), so it pastes cleanly into an issue."""
    lines = ["w2vprof doctor", ""]
    lines += _key_values("Versions", report["versions"]) + [""]
    lines += _key_values("Machine", report["machine"]) + [""]
    for section, title in TITLES.items():
        lines += _checks(title, report.get(section, [])) + [""]
    lines.append(f"Took {report['elapsed_s']:.1f} s.")
    return "\n".join(lines) + "\n"


def doctor_command(
    fmt: str = typer.Option("text", "--format", "-f", help="text (to paste into a bug report) or json."),
) -> None:
    """What works here: versions, devices and precisions, peak memory, telemetry, one timed training step."""
    from w2vprof.cli.output import check_format
    from w2vprof.doctor import diagnose

    check_format(fmt, ("text", "json"))
    report = diagnose().to_dict()
    typer.echo(json.dumps(report, indent=2) if fmt == "json" else render_text(report), nl=fmt == "json")


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor_command)
