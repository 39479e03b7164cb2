"""Plots like the paper's Figs. 2-4: each function takes data and returns PNG bytes (or None if it has none).

Figures come from w2vprof.plotting (matplotlib, no display needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from w2vprof.analysis.fit import linear_fit
from w2vprof.plotting import figure_png, new_figure

__all__ = [
    "layer_memory_png",
    "layer_flops_png",
    "layer_time_png",
    "RooflinePoint",
    "layer_roofline_png",
    "versus_seconds_png",
    "fp32_vs_mixed_png",
]

#: kind of the layers.csv row that holds the rest of the step (w2vprof.measure.diagnostics.OTHER_KIND)
OTHER_KIND = "other"


def _layers_only(layers: Sequence) -> list:
    """The rows that are layers: the `other` row (the rest of the step) has no memory or FLOPs of its own."""
    return [layer for layer in layers if layer.kind != OTHER_KIND]


def layer_memory_png(layers: Sequence, title: str) -> Optional[bytes]:
    """Fig. 2 left: activation memory saved by each layer (bars) and its running total (line)."""
    layers = _layers_only(layers)
    if not layers:
        return None
    fig, (ax,) = new_figure()
    names = [row.layer for row in layers]
    ax.bar(range(len(names)), [row.act_mem_bytes / 1e6 for row in layers], color="#4C72B0", label="saved by the layer")
    ax.set_ylabel("activation memory (MB)")
    twin = ax.twinx()
    cumulative = [row.cum_act_mem_bytes / 1e9 for row in layers]
    twin.plot(range(len(names)), cumulative, color="#C44E52", marker=".", label="cumulative")
    twin.plot([len(names) - 1], [cumulative[-1]], "x", color="red", markersize=12, mew=3)
    twin.annotate(
        f"peak {cumulative[-1]:.2f} GB",
        (len(names) - 1, cumulative[-1]),
        textcoords="offset points",
        xytext=(-95, -22),
        color="red",
    )
    twin.set_ylabel("cumulative through forward (GB)")
    twin.set_ylim(bottom=0)
    ax.set_xticks(range(len(names)), names, rotation=70, fontsize=7)
    ax.set_title(title)
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.92), ncol=2, fontsize=8)
    return figure_png(fig)


def layer_flops_png(layers: Sequence, title: str) -> Optional[bytes]:
    """Fig. 2 right: forward and backward FLOPs per layer (stacked)."""
    layers = _layers_only(layers)
    if not layers:
        return None
    fig, (ax,) = new_figure()
    names = [row.layer for row in layers]
    forward = [row.fwd_flops / 1e9 for row in layers]
    backward = [row.bwd_flops / 1e9 for row in layers]
    ax.bar(range(len(names)), forward, label="forward", color="#55A868")
    ax.bar(range(len(names)), backward, bottom=forward, label="backward", color="#8172B2")
    ax.set_ylabel("GFLOPs per training step")
    ax.set_xticks(range(len(names)), names, rotation=70, fontsize=7)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return figure_png(fig)


def layer_time_png(layers: Sequence, title: str) -> Optional[bytes]:
    """Fig. 2, time panel: forward and backward seconds per layer (stacked), then the rest of the step (`other`);
    None when no row has times (a sweep run without --layer-repeats)."""
    timed = [layer for layer in layers if layer.sec is not None]
    if not timed:
        return None
    fig, (ax,) = new_figure()
    names = [layer.layer for layer in timed]
    scale, unit = (1e3, "ms") if max(layer.sec for layer in timed) < 1 else (1.0, "s")
    forward = [(layer.fwd_sec or 0.0) * scale for layer in timed]
    backward = [(layer.bwd_sec or 0.0) * scale for layer in timed]
    rest = [layer.sec * scale if layer.kind == OTHER_KIND else 0.0 for layer in timed]
    ax.bar(range(len(names)), forward, label="forward", color="#55A868")
    ax.bar(range(len(names)), backward, bottom=forward, label="backward", color="#8172B2")
    if any(rest):
        ax.bar(range(len(names)), rest, label="rest of the step (optimizer, glue)", color="#999999")
    ax.set_ylabel(f"{unit} per training step")
    ax.set_xticks(range(len(names)), names, rotation=70, fontsize=7)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return figure_png(fig)


@dataclass(frozen=True)
class RooflinePoint:
    """One layer on the roofline: FLOPs per byte of its inputs, outputs and weights, and its achieved FLOP/s."""

    layer: str
    kind: str
    intensity: float  # FLOP per byte
    flops_per_sec: float


def layer_roofline_png(
    points: Sequence[RooflinePoint], compute_peak: Optional[float], bandwidth: Optional[float], title: str
) -> Optional[bytes]:
    """Per-layer roofline: achieved FLOP/s against arithmetic intensity (log-log), under the measured compute
    ceiling (horizontal) and bandwidth ceiling (bandwidth x intensity); either ceiling is left out when unknown."""
    if not points:
        return None
    fig, (ax,) = new_figure(8, 5)
    kinds = list(dict.fromkeys(point.kind for point in points))
    for kind in kinds:
        members = [point for point in points if point.kind == kind]
        ax.scatter([p.intensity for p in members], [p.flops_per_sec / 1e9 for p in members], label=kind, zorder=3)
    # every transformer layer is alike: name the first, and every other layer
    first_transformer = next((point.layer for point in points if point.kind == "transformer"), None)
    for point in points:
        if point.kind != "transformer" or point.layer == first_transformer:
            ax.annotate(
                point.layer,
                (point.intensity, point.flops_per_sec / 1e9),
                fontsize=7,
                textcoords="offset points",
                xytext=(4, 3),
            )
    _draw_ceilings(ax, [p.intensity for p in points], compute_peak, bandwidth)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte of inputs, outputs and weights)")
    ax.set_ylabel("achieved GFLOP/s (forward + backward)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return figure_png(fig)


def _draw_ceilings(ax, intensities: list[float], compute_peak: Optional[float], bandwidth: Optional[float]) -> None:
    low, high = min(intensities) / 4, max(intensities) * 4
    if compute_peak and bandwidth:
        ridge = compute_peak / bandwidth  # intensity where the two ceilings meet
        low, high = min(low, ridge / 4), max(high, ridge * 4)
        xs = [low, ridge, high]
        ax.plot(
            xs,
            [min(compute_peak, bandwidth * x) / 1e9 for x in xs],
            color="black",
            lw=1.5,
            label=f"ceiling: {compute_peak / 1e9:.0f} GFLOP/s matmul, {bandwidth / 1e9:.1f} GB/s copy",
        )
    elif compute_peak:
        ax.plot(
            [low, high],
            [compute_peak / 1e9] * 2,
            color="black",
            lw=1.5,
            label=f"matmul ceiling {compute_peak / 1e9:.0f} GFLOP/s",
        )
    elif bandwidth:
        ax.plot(
            [low, high],
            [bandwidth * low / 1e9, bandwidth * high / 1e9],
            color="black",
            lw=1.5,
            label=f"bandwidth ceiling {bandwidth / 1e9:.1f} GB/s",
        )


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
            ax.plot(
                [min(xs), max(xs)],
                [a + b * min(xs), a + b * max(xs)],
                "--",
                color=line.get_color(),
                label=f"fit: {a:.3g} {unit} + {b:.3g} {unit} per s, R² {r2:.3f}",
            )
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
        ax.bar(
            [i + index * width for i in range(len(lengths))],
            [values.get(s, 0) / 1e9 for s in lengths],
            width=width,
            label=name,
        )
    ax.set_xticks([i + width * (len(points) - 1) / 2 for i in range(len(lengths))], [f"{s:g}" for s in lengths])
    ax.set_xlabel("utterance length (s)")
    ax.set_ylabel("memory (GB)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return figure_png(fig)
