"""Plots of federated runs (the paper's Fig. 5 top, and what it left out: the cost of each client per round).

Each *_png function takes records and returns PNG bytes (None when there is nothing to draw); `write_plots` reads
run folders (rounds.csv + clients.csv) and writes the files. matplotlib with the Agg backend (no display).
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Optional, Sequence

from w2vprof.errors import BadInput
from w2vprof.fl.records import ClientRoundRecord, RoundRecord, read_clients_csv, read_rounds_csv
from w2vprof.report.plots import _png

__all__ = ["RunCurves", "load_run", "validation_loss_png", "client_cost_png", "write_plots"]


class RunCurves:
    """One run folder's rows and the label its curve carries."""

    def __init__(self, folder: Path, rounds: list[RoundRecord], clients: list[ClientRoundRecord]) -> None:
        self.folder = Path(folder)
        self.rounds = rounds
        self.clients = clients
        aggregation = rounds[0].aggregation if rounds else "?"
        self.label = f"{aggregation} ({self.folder.name})"


def load_run(folder: Path) -> RunCurves:
    folder = Path(folder)
    if not (folder / "rounds.csv").is_file():
        raise BadInput(f"{folder}: not a federated run folder (no rounds.csv)")
    clients_path = folder / "clients.csv"
    clients = read_clients_csv(clients_path) if clients_path.is_file() else []
    return RunCurves(folder, read_rounds_csv(folder / "rounds.csv"), clients)


def _figure(rows: int = 1, width: float = 8.0, height: float = 4.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, 1, figsize=(width, height * rows), dpi=110, squeeze=False)
    return plt, fig, [row[0] for row in axes]


def validation_loss_png(runs: Sequence[RunCurves], title: str = "Validation loss per round") -> Optional[bytes]:
    """Fig. 5 top: held-out loss of the aggregated model after each round (round 0: the initial model)."""
    drawn = [run for run in runs if any(r.validation_loss is not None for r in run.rounds)]
    if not drawn:
        return None
    plt, fig, (ax,) = _figure()
    for run in drawn:
        points = [(r.round, r.validation_loss) for r in run.rounds if r.validation_loss is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=run.label)
    ax.set_xlabel("round")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("validation loss (wav2vec 2.0 objective)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(plt, fig)


def client_cost_png(run: RunCurves) -> Optional[bytes]:
    """Per-client cost per round: seconds (top) and peak resident memory (bottom); dots are clients, the line
    is the median, so a slow or memory-hungry client stands out."""
    rows = [c for c in run.clients if c.status == "ok"]
    if not rows:
        return None
    plt, fig, (seconds_ax, memory_ax) = _figure(rows=2, height=3.4)
    for ax, value, unit in (
        (seconds_ax, lambda c: c.client_sec, "client seconds per round"),
        (memory_ax, lambda c: c.peak_rss_bytes / 1e6 if c.peak_rss_bytes is not None else None, "peak RSS (MB)"),
    ):
        points = [(c.round, value(c)) for c in rows if value(c) is not None]
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
        ax.xaxis.get_major_locator().set_params(integer=True)
    seconds_ax.set_title(f"Client cost per round: {run.label}")
    return _png(plt, fig)


def write_plots(run_folders: Sequence[Path], out_dir: Path) -> list[Path]:
    """validation-loss.png (every run on one axis) and client-cost-<run>.png per run into `out_dir`."""
    runs = [load_run(folder) for folder in run_folders]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    png = validation_loss_png(runs)
    if png is not None:
        written.append(_write(out_dir / "validation-loss.png", png))
    for run in runs:
        png = client_cost_png(run)
        if png is not None:
            written.append(_write(out_dir / f"client-cost-{run.folder.name}.png", png))
    return written


def _write(path: Path, data: bytes) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
