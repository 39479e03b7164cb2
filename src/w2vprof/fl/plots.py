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

__all__ = ["validation_loss_png", "client_cost_png", "fleet_timeline_png", "write_plots"]

#: Rounds a fleet timeline draws at most (the first ones): more bars than this cannot be told apart.
TIMELINE_ROUNDS = 40


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


def fleet_timeline_png(run: RunCurves) -> Optional[bytes]:
    """A fleet run's rounds on the fleet: per round one bar per client from 0 to its virtual seconds, coloured by
    the device it stands for (hatched: cut by the deadline; a cross at 0: left out before training, by memory,
    an unsupported configuration or being unreachable), a tick where the round ended, the deadline as a line."""
    clients = [c for c in run.clients if c.fleet_device and c.round <= TIMELINE_ROUNDS]
    if run.fleet is None or not clients:
        return None
    rounds = sorted({c.round for c in clients})
    devices = list(dict.fromkeys(line.device for line in run.fleet.lines))
    colours = {device: f"C{index % 10}" for index, device in enumerate(devices)}
    fig, (ax,) = new_figure(9.0, max(2.8, 0.45 * len(rounds) + 1.2))
    for rnd in rounds:
        in_round = sorted((c for c in clients if c.round == rnd), key=lambda c: (c.partition_id or 0, c.client))
        height = 0.8 / len(in_round)
        for index, client in enumerate(in_round):
            y = rnd - 0.4 + (index + 0.5) * height
            colour = colours.get(client.fleet_device, "grey")
            if client.virtual_sec is None:
                ax.plot([0], [y], marker="x", color=colour, markersize=5)
            else:
                cut = client.dropped == "deadline"
                ax.barh(
                    y,
                    client.virtual_sec,
                    height=height * 0.9,
                    color=colour,
                    alpha=0.45 if cut else 0.9,
                    hatch="//" if cut else None,
                    edgecolor=colour,
                )
    ended = [(r.round, r.virtual_round_sec) for r in run.rounds if r.round in rounds and r.virtual_round_sec]
    ax.plot(
        [e[1] for e in ended], [e[0] for e in ended], "|", color="black", markersize=14, label="round ends", zorder=3
    )
    if run.fleet.deadline_sec is not None:
        ax.axvline(
            run.fleet.deadline_sec, color="#C44E52", linestyle="--", label=f"deadline {run.fleet.deadline_sec:g} s"
        )
    _timeline_legend(ax, colours)
    ax.set_yticks(rounds)
    ax.invert_yaxis()  # round 1 on top, as a schedule reads
    ax.set_ylabel("round")
    ax.set_xlabel("virtual seconds on the fleet (measured s/batch x local steps + transfers)")
    played = max(c.round for c in run.clients)
    shown = f" (rounds 1-{TIMELINE_ROUNDS} of {played})" if played > TIMELINE_ROUNDS else ""
    ax.set_title(f"Rounds on the fleet: {run.label}{shown}")
    ax.grid(axis="x", alpha=0.3)
    return figure_png(fig)


def _timeline_legend(ax, colours: dict[str, str]) -> None:
    from matplotlib.patches import Patch

    handles, labels = ax.get_legend_handles_labels()
    handles += [Patch(color=colour) for colour in colours.values()]
    labels += list(colours)
    handles.append(Patch(facecolor="white", edgecolor="grey", hatch="//"))
    labels.append("cut by the deadline")
    handles.append(ax.plot([], [], "x", color="grey")[0])
    labels.append("left out before training")
    ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside: bars stay seen


def write_plots(run_folders: Sequence[Path], out_dir: Path) -> list[Path]:
    """validation-loss.png (every run on one axis), client-cost-<run>.png per run and, for a fleet run,
    fleet-timeline-<run>.png into `out_dir`."""
    runs = [load_run(folder) for folder in run_folders]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {"validation-loss.png": validation_loss_png(runs)}
    figures.update({f"client-cost-{run.folder.name}.png": client_cost_png(run) for run in runs})
    figures.update({f"fleet-timeline-{run.folder.name}.png": fleet_timeline_png(run) for run in runs})
    written = []
    for name, png in figures.items():
        if png is not None:
            write_bytes_atomic(out_dir / name, png)
            written.append(out_dir / name)
    return written
