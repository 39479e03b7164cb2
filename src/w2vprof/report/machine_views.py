"""The views of this machine: `w2vprof devices` (identity, telemetry sources, what a profile would record),
`devices --calibrate` (its measured ceilings) and `w2vprof doctor` (what works here, as text to paste into a bug
report). Each takes the data the command gathered and returns a `View` whose JSON is that data."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from w2vprof.report.render import Table
from w2vprof.report.views import View

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.devices.calibrate import Calibration

__all__ = ["DEVICES_FORMATS", "DOCTOR_FORMATS", "devices_view", "calibration_view", "doctor_view"]

DEVICES_FORMATS = ("table", "json")
#: text first: the doctor's default is what pastes cleanly into an issue.
DOCTOR_FORMATS = ("text", "json")


# -- devices -----------------------------------------------------------------------------------------------
def devices_view(info: dict[str, Any]) -> View:
    """This device (key-value), its telemetry sources, and what a profile would record with which source; the
    gathered dict as JSON (cli.devices.gather)."""
    sources = Table(
        title="Telemetry sources",
        columns=["source", "available", "details / why not"],
        align="lll",
        rows=[[row["source"], "yes" if row["available"] else "no", row["details"]] for row in info["sources"]],
    )
    recorded = Table(
        title=f"What a profile on {info['torch_device']} records here",
        align="lll",
        columns=["measure", "source", "details / why empty"],
        rows=[
            [measure, choice["source"] or "(empty)", choice["details"]] for measure, choice in info["recorded"].items()
        ],
    )
    return View(tables=[_identity_table(info), sources, recorded], document=info, formats=DEVICES_FORMATS)


def _identity_table(info: dict[str, Any]) -> Table:
    identity = info["identity"]
    gib = 2**30
    rows = [["device", f"{identity['device_name']} (torch device: {info['torch_device']}, {identity['platform']})"]]
    if identity["board"]:
        rows.append(["board", identity["board"]])
    native = "native bfloat16" if identity["bf16_native"] else "no native bfloat16"
    rows.append(["CPU", f"{identity['cpu_model']}, {identity['cpu_cores']} cores, {native}"])
    rows.append(["memory", f"{identity['total_mem_bytes'] / gib:.1f} GiB"])
    if identity["gpu_name"]:
        driver = f", driver {identity['gpu_driver']}" if identity["gpu_driver"] else ""
        rows.append(["GPU", identity["gpu_name"] + driver])
    ceiling = identity["memory_ceiling_bytes"]
    rows.append(["memory ceiling", f"{ceiling / gib:.1f} GiB ({identity['memory_ceiling_source']})"])
    rows.append(["fingerprint", identity["device_fingerprint"]])
    return Table(title="This device", columns=["field", "value"], rows=rows, align="ll", show_header=False)


def calibration_view(calibration: Calibration, cache_file: Path) -> View:
    """One line per ceiling, then where it is cached (or why it is not); JSON as the cache file holds it."""
    lines = calibration.summary_lines()
    # a size cut to the budget, a busy machine, no cache (without a mixed rate the mixed line shows the note)
    if calibration.note and calibration.peak_flops_mixed_measured:
        lines.append(f"note: {calibration.note}")
    if "not cached" not in calibration.note:
        lines.append(f"cached in {cache_file}")
    # The cache file's own order (Calibration.to_json sorts the keys), so the two read alike.
    document = dict(sorted(asdict(calibration).items()))
    return View(notes=lines, records=[calibration], document=document, formats=DEVICES_FORMATS)


# -- doctor ------------------------------------------------------------------------------------------------
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


def doctor_lines(report: dict[str, Any]) -> list[str]:
    """Plain lines (no colours, no box drawing), so they paste cleanly into an issue."""
    lines = ["w2vprof doctor", ""]
    lines += _key_values("Versions", report["versions"]) + [""]
    lines += _key_values("Machine", report["machine"]) + [""]
    for section, title in TITLES.items():
        lines += _checks(title, report.get(section, [])) + [""]
    lines.append(f"Took {report['elapsed_s']:.1f} s.")
    return lines


def doctor_view(report: dict[str, Any]) -> View:
    """`w2vprof doctor`: its findings as lines of text, or as the JSON of DoctorReport.to_dict."""
    return View(notes=doctor_lines(report), document=report, formats=DOCTOR_FORMATS)
