"""The views of the read-only arithmetic on results (w2vprof.analysis): `feasibility`, `fl-estimate`, `forecast`
and `plan`. Each takes the analysis' result and returns a `View` whose records are the result's rows."""

from __future__ import annotations

from typing import Sequence

from w2vprof.analysis.feasibility import Feasibility, FeasibilityRow
from w2vprof.analysis.fl_estimate import FlEstimateRow, FlSetting
from w2vprof.analysis.forecast import ForecastResult
from w2vprof.analysis.plan import Plan
from w2vprof.report.cells import number
from w2vprof.report.render import Column, Table, headings
from w2vprof.report.views import View, as_json

__all__ = ["feasibility_view", "fl_estimate_view", "forecast_view", "plan_view"]


# -- feasibility -------------------------------------------------------------------------------------------
def feasibility_view(result: Feasibility) -> View:
    """The memory fits, then one line per device: the longest utterance per model, precision and batch."""
    return View(tables=[_fits_table(result), _decisions_table(result)], notes=result.notes, records=result.rows)


def _fits_table(result: Feasibility) -> Table:
    return Table(
        title="Training memory = a + b x (batch x seconds), least squares",
        columns=headings(
            "model",
            "precision",
            Column("a", "GB"),
            Column("b", "GB/batch/s"),
            "R^2",
            "n",
            "batch x s",
            "memory",
            "device",
        ),
        rows=[
            [
                f.model,
                f.precision,
                f"{f.intercept_bytes / 1e9:.3f}",
                f"{f.bytes_per_batch_second / 1e9:.4f}",
                f"{f.r2:.4f}",
                str(f.points),
                f"{f.min_batch_seconds:g}-{f.max_batch_seconds:g}",
                "peak" if f.memory_source == "peak_mem_bytes" else "parts",
                f.devices,
            ]
            for f in result.fits.fits
        ],
        caption="n points measured over the batch x s range. memory: peak = measured peak_mem_bytes; parts = "
        "activations + parameters + gradients + optimizer state. Longest utterance = (usable - a) / "
        "(b x batch). GB = 1e9 bytes.",
    )


def _decision_cell(row: FeasibilityRow) -> str:
    if row.note.startswith("no mixed"):
        return "no mixed"
    if row.max_seconds is None:
        return "none"
    mark = "*" if row.max_seconds_extrapolated else ""
    return f"{row.max_seconds:.1f}{mark} " + ("yes" if row.fits else "no")


def _decisions_table(result: Feasibility) -> Table:
    combos = list(dict.fromkeys((r.model, r.precision, r.batch) for r in result.rows))
    by_device: dict[str, dict[tuple[str, str, int], FeasibilityRow]] = {}
    for row in result.rows:
        by_device.setdefault(row.device, {})[(row.model, row.precision, row.batch)] = row
    body = []
    for device, cells in by_device.items():
        first = next(iter(cells.values()))
        body.append(
            [device, f"{first.memory_gb:g}", f"{first.usable_gb:.1f}"]
            + [_decision_cell(cells[c]) if c in cells else "" for c in combos]
        )
    return Table(
        title=f"Longest utterance (s) that trains in {result.usable_fraction:.0%} of the memory; "
        f"yes/no: fits at {result.rows[0].target_seconds:g} s",
        columns=headings("device", Column("memory", "GB"), Column("usable", "GB"))
        + [f"{m} {p} b{b}" for m, p, b in combos],
        rows=body,
        caption="*: extrapolated beyond twice the largest measured batch x seconds. none: even the fixed part a "
        "does not fit. no mixed: the device has no mixed precision.",
    )


# -- fl-estimate -------------------------------------------------------------------------------------------
def fl_estimate_view(setting: FlSetting, rows: Sequence[FlEstimateRow]) -> View:
    """One line per device: a local epoch, a round and the whole federated training."""
    return View(tables=[_fl_estimate_table(setting, rows)], records=rows)


def _fl_estimate_table(setting: FlSetting, rows: Sequence[FlEstimateRow]) -> Table:
    per_round = setting.clients_per_round or setting.clients
    communication = any(r.communication_hours_per_round is not None for r in rows)
    lengths = len({r.seconds for r in rows}) > 1  # a column only when it tells rows apart
    batches = rows[0].batches_per_epoch if rows else 0
    return Table(
        title=(
            f"Federated pretraining: {setting.clients} clients ({per_round} per round) x "
            f"{setting.samples_per_client:,} samples, batch {setting.batch}, {setting.local_epochs:g} local "
            f"epoch(s), {setting.rounds} rounds, {setting.model} {setting.precision}"
        ),
        columns=["device"]
        + (["seconds"] if lengths else [])
        + headings("s/batch", Column("epoch", "h"))
        + (headings(Column("transfer", "h/round")) if communication else [])
        + headings(Column("round", "h"), Column("total", "days"), "device-hours", "source"),
        rows=[
            [r.device]
            + ([f"{r.seconds:g}"] if lengths else [])
            + [f"{r.sec_per_batch:.2f}", f"{r.epoch_hours:.2f}"]
            + ([number(r.communication_hours_per_round, 3)] if communication else [])
            + [f"{r.round_hours:.2f}", f"{r.total_days:.1f}", f"{r.device_hours:,.0f}", r.source]
            for r in rows
        ],
        caption=f"An epoch is {batches:,} batches. Clients train concurrently: a round lasts one client's local "
        "epochs (plus transfers with --bandwidth). device-hours: training summed over the clients.",
    )


# -- forecast ----------------------------------------------------------------------------------------------
def forecast_view(result: ForecastResult) -> View:
    """Two lines: the two devices' seconds per batch and their ratio, then the years the doubling law needs."""
    if result.ratio <= 1:
        verdict = (
            f"{result.device} is already as fast as {result.target} "
            f"(ratio {result.ratio:.2f}): no wait under any doubling law."
        )
    else:
        verdict = (
            f"Doubling law: compute doubles every {result.doubling_months:g} months, so closing a "
            f"{result.ratio:.2f}x gap takes log2({result.ratio:.2f}) x {result.doubling_months:g} / 12 = "
            f"{result.years:.1f} years: {result.from_year:g} + {result.years:.1f} = {result.year:.1f}."
        )
    comparison = (
        f"{result.device} takes {result.device_sec_per_batch:.3g} s per batch, {result.target} "
        f"{result.target_sec_per_batch:.3g} s ({result.model}, batch {result.batch}, {result.precision}, "
        f"{result.seconds:g} s utterances): ratio {result.ratio:.2f}."
    )
    return View(notes=[comparison, verdict], records=[result])


# -- plan --------------------------------------------------------------------------------------------------
def plan_view(plan: Plan) -> View:
    """One line per recipe, fastest fitting first, then the verdict and the notes; JSON adds the target."""
    t = plan.target
    pretraining = t.objective == "pretrain"
    model = t.model if pretraining else f"{t.model} ({t.objective})"
    table = Table(
        title=f"Training recipes for {model}, batch {t.batch}, {t.seconds:g} s, {t.precision} on {t.device} "
        f"({t.usable_bytes / 1e9:.2f} GB usable: {t.usable_fraction:.0%} of {t.memory_gb:g} GB)",
        columns=headings(
            "recipe",
            "fits",
            Column("peak memory", "GB"),
            "s/batch",
            "time from",
            "measured rows",
            Column("memory fit", "GB"),
        ),
        rows=[
            [
                r.recipe,
                ("yes" if r.fits else f"no (+{r.over_gb:.2f} GB)") + ("*" if r.extrapolated else ""),
                f"{r.peak_mem_gb:.2f}",
                "" if r.sec_per_batch is None else f"{r.sec_per_batch:.3g}",
                r.time_basis,
                r.measured_rows,
                r.memory_fit,
            ]
            for r in plan.rows
        ],
        caption="Fastest fitting recipe first, then the rest by memory. Each recipe's predictions are least-squares "
        "fits a + b x (+ c x s), x = batch x seconds, over its own measured rows (docs/recipes.md). "
        "*: beyond twice the largest measured batch x seconds. GB = 1e9 bytes.",
    )
    # the target names its objective where it is not pretraining: a pretraining plan's JSON is as it was before
    target = {key: value for key, value in as_json(t).items() if key != "objective" or not pretraining}
    document = {"target": target, "verdict": plan.verdict, "rows": plan.rows, "notes": plan.notes}
    return View(tables=[table], notes=[plan.verdict, *plan.notes], records=plan.rows, document=document)
