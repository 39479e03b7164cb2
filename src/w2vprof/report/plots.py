"""Plots like the paper's Figs. 2-4: each function takes data and returns PNG bytes (or None if it has none).

Figures come from w2vprof.plotting (matplotlib, no display needed).
"""
from __future__ import annotations

from typing import Optional, Sequence

from w2vprof.analysis.fit import linear_fit
from w2vprof.plotting import figure_png, new_figure

__all__ = ["layer_memory_png", "layer_flops_png", "versus_seconds_png", "fp32_vs_mixed_png"]


def layer_memory_png(layers: Sequence, title: str) -> Optional[bytes]:
    """Fig. 2 left: activation memory saved by each layer (bars) and its running total (line)."""
    if not layers:
        return None
    fig, (ax,) = new_figure()
    names = [l.layer for l in layers]
    ax.bar(range(len(names)), [l.act_mem_bytes / 1e6 for l in layers], color="#4C72B0", label="saved by the layer")
    ax.set_ylabel("activation memory (MB)")
    twin = ax.twinx()
    cumulative = [l.cum_act_mem_bytes / 1e9 for l in layers]
    twin.plot(range(len(names)), cumulative, color="#C44E52", marker=".", label="cumulative")
    twin.plot([len(names) - 1], [cumulative[-1]], "x", color="red", markersize=12, mew=3)
    twin.annotate(f"peak {cumulative[-1]:.2f} GB", (len(names) - 1, cumulative[-1]), textcoords="offset points",
                  xytext=(-95, -22), color="red")
    twin.set_ylabel("cumulative through forward (GB)")
    twin.set_ylim(bottom=0)
    ax.set_xticks(range(len(names)), names, rotation=70, fontsize=7)
    ax.set_title(title)
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.92), ncol=2, fontsize=8)
    return figure_png(fig)


def layer_flops_png(layers: Sequence, title: str) -> Optional[bytes]:
    """Fig. 2 right: forward and backward FLOPs per layer (stacked)."""
    if not layers:
        return None
    fig, (ax,) = new_figure()
    names = [l.layer for l in layers]
    forward = [l.fwd_flops / 1e9 for l in layers]
    backward = [l.bwd_flops / 1e9 for l in layers]
    ax.bar(range(len(names)), forward, label="forward", color="#55A868")
    ax.bar(range(len(names)), backward, bottom=forward, label="backward", color="#8172B2")
    ax.set_ylabel("GFLOPs per training step")
    ax.set_xticks(range(len(names)), names, rotation=70, fontsize=7)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return figure_png(fig)


def versus_seconds_png(
    series: dict[str, list[tuple[float, float]]], ylabel: str, title: str, unit: str = ""
) -> Optional[bytes]:
    """Fig. 3: one line per series (e.g. 'base fp32') of (seconds, value) points, with its least-squares fit.

    `unit` is the y unit, so the legend can say what the slope is (e.g. '+0.44 GB per s').
    """
    series = {name: sorted(points) for name, points in series.items() if len(points) >= 1}
    if not series:
        return None
    fig, (ax,) = new_figure(8, 4.5)
    for name, points in series.items():
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        line = ax.plot(xs, ys, "o", label=name)[0]
        if len(set(xs)) >= 2:
            a, b, r2 = linear_fit(xs, ys)
            ax.plot([min(xs), max(xs)], [a + b * min(xs), a + b * max(xs)], "--", color=line.get_color(),
                    label=f"fit: {a:.3g} {unit} + {b:.3g} {unit} per s, R² {r2:.3f}")
    ax.set_xlabel("utterance length (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return figure_png(fig)


def fp32_vs_mixed_png(points: dict[str, dict[float, float]], title: str) -> Optional[bytes]:
    """Fig. 4: memory per length, FP32 and mixed side by side (bars), for one model."""
    lengths = sorted({s for values in points.values() for s in values})
    if not lengths or len(points) < 2:
        return None
    fig, (ax,) = new_figure(8, 4.5)
    width = 0.8 / len(points)
    for index, (name, values) in enumerate(sorted(points.items())):
        ax.bar([i + index * width for i in range(len(lengths))], [values.get(s, 0) / 1e9 for s in lengths],
               width=width, label=name)
    ax.set_xticks([i + width * (len(points) - 1) / 2 for i in range(len(lengths))], [f"{s:g}" for s in lengths])
    ax.set_xlabel("utterance length (s)")
    ax.set_ylabel("memory (GB)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return figure_png(fig)
