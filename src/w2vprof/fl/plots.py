"""Plots of federated runs (the paper's Fig. 5 top, and what it left out: the cost of each client per round).

Each *_png function takes records and returns PNG bytes (None when there is nothing to draw); `write_plots` reads
run folders (rounds.csv + clients.csv) and writes the files. Figures come from w2vprof.plotting (no display).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Optional, Sequence

from w2vprof.files import write_bytes_atomic
from w2vprof.fl.records import RunCurves, load_run
from w2vprof.plotting import figure_png, integer_ticks, new_figure

__all__ = ["validation_loss_png", "client_cost_png", "write_plots"]


def validation_loss_png(runs: Sequence[RunCurves], title: str = "Validation loss per round") -> Optional[bytes]:
    """Fig. 5 top: held-out loss of the aggregated model after each round (round 0: the initial model)."""
    drawn = [run for run in runs if any(r.validation_loss is not None for r in run.rounds)]
    if not drawn:
        return None
    fig, (ax,) = new_figure(8.0, 4.2)
    for run in drawn:
        points = [(r.round, r.validation_loss) for r in run.rounds if r.validation_loss is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=run.label)
    ax.set_xlabel("round")
    integer_ticks(ax)
    ax.set_ylabel("validation loss (wav2vec 2.0 objective)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)


def client_cost_png(run: RunCurves) -> Optional[bytes]:
    """Per-client cost per round: seconds (top) and peak resident memory (bottom); dots are clients, the line
    is the median, so a slow or memory-hungry client stands out."""
    rows = [c for c in run.clients if c.status == "ok"]
    if not rows:
        return None
    fig, (seconds_ax, memory_ax) = new_figure(8.0, 3.4, rows=2)
    for ax, value, unit in (
        (seconds_ax, lambda c: c.client_sec, "client seconds per round"),
        (memory_ax, lambda c: c.peak_rss_bytes / 1e6 if c.peak_rss_bytes is not None else None, "peak RSS (MB)"),
    ):
        values = [(c.round, value(c)) for c in rows]
        points = [(rnd, v) for rnd, v in values if v is not None]
        if not points:
            continue
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=8, alpha=0.4, label="one client")
        rounds = sorted({p[0] for p in points})
        medians = [statistics.median(v for r, v in points if r == rnd) for rnd in rounds]
        ax.plot(rounds, medians, color="#C44E52", label="median")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    memory_ax.set_xlabel("round")
    for ax in (seconds_ax, memory_ax):
        integer_ticks(ax)
    seconds_ax.set_title(f"Client cost per round: {run.label}")
    return figure_png(fig)


def write_plots(run_folders: Sequence[Path], out_dir: Path) -> list[Path]:
    """validation-loss.png (every run on one axis) and client-cost-<run>.png per run into `out_dir`."""
    runs = [load_run(folder) for folder in run_folders]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {"validation-loss.png": validation_loss_png(runs)}
    figures.update({f"client-cost-{run.folder.name}.png": client_cost_png(run) for run in runs})
    written = []
    for name, png in figures.items():
        if png is not None:
            write_bytes_atomic(out_dir / name, png)
            written.append(out_dir / name)
    return written
