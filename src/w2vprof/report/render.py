"""Renderers: data in, text out (CSV, JSON, Markdown, LaTeX, HTML) or a Rich table to the terminal.

Nothing here measures or reads files; the CLI writes what these return.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

__all__ = [
    "Table",
    "table_csv",
    "table_markdown",
    "table_latex",
    "table_html",
    "print_table",
    "comparison_csv",
    "comparison_json",
    "comparison_markdown",
    "comparison_tables",
    "print_comparison",
    "print_feasibility",
    "print_fl_estimate",
]


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


def table_csv(table: Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(table.rows)
    return buffer.getvalue()


def table_markdown(table: Table) -> str:
    lines = [f"**{table.title}**", "", "| " + " | ".join(table.columns) + " |",
             "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table.rows]
    if table.caption:
        lines += ["", table.caption]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text


def table_latex(table: Table) -> str:
    spec = "l" * 1 + "r" * (len(table.columns) - 1)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_latex_escape(table.title)}}}",
             rf"\begin{{tabular}}{{{spec}}}", r"\hline",
             " & ".join(_latex_escape(c) for c in table.columns) + r" \\", r"\hline"]
    lines += [" & ".join(_latex_escape(cell) for cell in row) + r" \\" for row in table.rows]
    lines += [r"\hline", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def table_html(table: Table) -> str:
    from html import escape

    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
    caption = f"<p class='caption'>{escape(table.caption)}</p>" if table.caption else ""
    return f"<h3>{escape(table.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{caption}"


def print_table(table: Table) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable

    rich_table = RichTable(title=table.title, caption=table.caption or None)
    for index, column in enumerate(table.columns):
        rich_table.add_column(column, justify="left" if index == 0 else "right")
    for row in table.rows:
        rich_table.add_row(*row)
    Console().print(rich_table)


def _fmt(value: Optional[float], digits: int = 2, suffix: str = "") -> str:
    return "" if value is None else f"{value:.{digits}f}{suffix}"


# -- compare -------------------------------------------------------------------------------------------
COMPARE_COLUMNS = ["device", "model", "batch", "precision", "sec_per_batch", "status", "slowdown_vs_baseline",
                   "seconds", "sec_per_sequence", "source"]


def comparison_csv(comparison) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COMPARE_COLUMNS)
    for row in comparison.rows:
        values = asdict(row)
        writer.writerow(["" if values[c] is None else values[c] for c in COMPARE_COLUMNS])
    return buffer.getvalue()


def comparison_json(comparison) -> str:
    return json.dumps(
        {
            "baseline": comparison.baseline,
            "rows": [asdict(r) for r in comparison.rows],
            "batch_gains": [asdict(r) for r in comparison.batch_gains],
            "mixed_speedups": [asdict(r) for r in comparison.mixed_speedups],
            "oom": [asdict(r) for r in comparison.ooms],
        },
        indent=2,
    ) + "\n"


def comparison_tables(comparison) -> list[Table]:
    baseline = comparison.baseline
    cell = lambda r: {"oom": "OOM", "unsupported": "-"}.get(r.status, r.status) if r.sec_per_batch is None else (  # noqa: E731
        f"{r.sec_per_batch:.2f}" + (f" ({r.slowdown_vs_baseline:.1f}x)" if r.slowdown_vs_baseline and baseline else "")
    )
    main = Table(
        title="Seconds per batch" + (f" (slowdown vs {baseline})" if baseline else ""),
        columns=["device", "model", "batch", "seconds", "precision", "sec/batch"],
        rows=[[r.device, r.model, str(r.batch), f"{r.seconds:g}", r.precision, cell(r)] for r in comparison.rows],
        caption="OOM: out of memory; -: the device has no mixed precision",
    )
    gains = Table(
        title="Per-sequence time: larger batch vs smaller",
        columns=["device", "model", "precision", "seconds", "batches", "s/seq small", "s/seq large", "gain"],
        rows=[[g.device, g.model, g.precision, f"{g.seconds:g}", f"{g.batch_small} -> {g.batch_large}",
               f"{g.sec_per_sequence_small:.3f}", f"{g.sec_per_sequence_large:.3f}", f"{g.per_sequence_gain:.0%}"]
              for g in comparison.batch_gains],
    )
    speedups = Table(
        title="Mixed precision over FP32",
        columns=["device", "model", "batch", "seconds", "fp32 s", "mixed s", "speedup"],
        rows=[[m.device, m.model, str(m.batch), f"{m.seconds:g}", f"{m.fp32_sec_per_batch:.2f}",
               f"{m.mixed_sec_per_batch:.2f}", f"{m.mixed_speedup:.2f}x"] for m in comparison.mixed_speedups],
    )
    ooms = Table(
        title="Out of memory",
        columns=["device", "model", "batch", "seconds", "precision"],
        rows=[[r.device, r.model, str(r.batch), f"{r.seconds:g}", r.precision] for r in comparison.ooms],
    )
    return [t for t in (main, gains, speedups, ooms) if t.rows]


def comparison_markdown(comparison) -> str:
    return "\n".join(table_markdown(t) for t in comparison_tables(comparison))


def print_comparison(comparison) -> None:
    for table in comparison_tables(comparison):
        print_table(table)


# -- analysis ------------------------------------------------------------------------------------------
def feasibility_tables(fits, rows) -> list[Table]:
    fit_table = Table(
        title="Training memory = a + b x (batch x seconds)",
        columns=["model", "precision", "a (GB)", "b (GB per batch x s)", "R^2", "points", "measured batch x s", "memory"],
        rows=[[f.model, f.precision, f"{f.intercept_bytes / 1e9:.2f}", f"{f.bytes_per_batch_second / 1e9:.3f}",
               f"{f.r2:.4f}", str(f.points), f"{f.min_batch_seconds:g}-{f.max_batch_seconds:g}", f.memory_source]
              for f in fits],
    )
    device_table = Table(
        title="Who can train what",
        columns=["device", "usable GB", "model", "precision", "batch", "longest utterance (s)", f"fits",
                 "note"],
        rows=[[r.device, f"{r.usable_gb:.1f}", r.model, r.precision, str(r.batch),
               "none" if r.max_seconds is None else f"{r.max_seconds:.1f}" + (" (extrapolated)" if r.extrapolated else ""),
               ("yes" if r.fits_at_seconds else "no") + f" at {r.target_seconds:g} s", r.note]
              for r in rows],
        caption="extrapolated: beyond twice the largest measured batch x seconds",
    )
    return [fit_table, device_table]


def print_feasibility(fits, rows) -> None:
    for table in feasibility_tables(fits, rows):
        print_table(table)


def fl_estimate_table(setting, rows) -> Table:
    return Table(
        title=(f"Federated pretraining: {setting.clients} clients x {setting.samples_per_client} samples, batch "
               f"{setting.batch}, {setting.rounds} rounds, {setting.model} {setting.precision}"),
        columns=["device", "s/batch", "batches/epoch", "epoch (h)", "round (h)", "total (h)", "total (days)"],
        rows=[[r.device, f"{r.sec_per_batch:.2f}", str(r.batches_per_epoch), f"{r.epoch_hours:.2f}",
               f"{r.round_hours:.2f}", f"{r.total_hours:.1f}", f"{r.total_days:.1f}"] for r in rows],
        caption="Clients train concurrently: a round lasts one client's local epochs (plus transfers with --bandwidth)",
    )


def print_fl_estimate(setting, rows) -> None:
    print_table(fl_estimate_table(setting, rows))


# -- report tables -------------------------------------------------------------------------------------
def table2(rows: Sequence, seconds: float) -> Table:
    """Table 2 style: rows device x batch, columns model x {FP32, Mixed}; cells seconds per batch, OOM or -."""
    from w2vprof.analysis.data import device_label, latest_by_config

    latest = latest_by_config(r for r in rows if abs(r.seconds - seconds) < 1e-6)
    models = [m for m in ("tiny", "base", "large") if any(k[1] == m for k in latest)]
    devices = list(dict.fromkeys(k[0] for k in latest))
    columns = ["device", "batch"] + [f"{m} {p}" for m in models for p in ("FP32", "Mixed")]
    body = []
    for device in devices:
        for batch in sorted({k[2] for k in latest if k[0] == device}):
            row = [device, str(batch)]
            for model in models:
                for precision in ("fp32", "mixed"):
                    record = latest.get((device, model, batch, round(seconds, 3), precision))
                    if record is None or record.status == "unsupported":
                        row.append("-")
                    elif record.status == "oom":
                        row.append("OOM")
                    elif record.status != "ok":
                        row.append(record.status)
                    else:
                        time = record.sec_per_batch_median if record.sec_per_batch_median is not None else record.sec_per_batch_mean
                        row.append(f"{time:.2f}")
            body.append(row)
    return Table(
        title=f"Training time (seconds per batch), {seconds:g} s utterances",
        columns=columns, rows=body, caption="OOM: out of memory; -: not measured or no mixed precision on the device",
    )


def table1(summary_rows: Sequence) -> Table:
    """Table 1 style from `w2vprof summary --format csv` rows: params (M) and GFLOPs per module and model."""
    models = list(dict.fromkeys(r.model for r in summary_rows))
    modules = list(dict.fromkeys(r.module for r in summary_rows))
    by_key = {(r.model, r.module): r for r in summary_rows}
    columns = ["module"] + [f"{m} params (M)" for m in models] + [f"{m} GFLOPs" for m in models]
    body = []
    for module in modules:
        row = [module]
        row += [f"{by_key[(m, module)].params / 1e6:.2f}" if (m, module) in by_key else "" for m in models]
        row += [f"{by_key[(m, module)].inference_flops / 1e9:.2f}" if (m, module) in by_key else "" for m in models]
        body.append(row)
    seconds = sorted({r.seconds for r in summary_rows})
    return Table(title=f"Parameters and inference FLOPs per module ({', '.join(f'{s:g}' for s in seconds)} s)",
                 columns=columns, rows=body, caption="FLOPs = 2 per multiply-add, one eval-mode forward pass")
