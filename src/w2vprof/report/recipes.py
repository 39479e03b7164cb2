"""The report's view of training recipes: what each recipe saves and costs against the default training step.

`recipes_table`: one line per recipe of every configuration measured under more than one recipe, with its peak
memory, activations, seconds per batch and FLOPs, each also relative to the default recipe's row of the same
configuration. `memory_time_png`: peak memory against seconds per batch, one labelled point per recipe, for the
configuration measured under the most recipes. Nothing here measures; docs/recipes.md explains the recipes.
"""

from __future__ import annotations

from typing import Optional, Sequence

from w2vprof.analysis.data import latest_by_config, sec_per_batch
from w2vprof.paper import FIG2_CONFIG
from w2vprof.plotting import figure_png, new_figure
from w2vprof.records import DEFAULT_RECIPE, ResultRecord, length_key, recipe_of
from w2vprof.report.cells import config_cells, number
from w2vprof.report.render import Table

__all__ = ["recipe_groups", "recipes_table", "memory_time_png", "memory_time_caption"]

#: The paper's configuration: preferred for the plot when it was measured under several recipes.


def recipe_groups(rows: Sequence[ResultRecord]) -> dict[tuple, list[ResultRecord]]:
    """(device, model, batch, seconds, precision) -> its rows, one per recipe (the latest), default first; only
    configurations measured under two or more recipes."""
    groups: dict[tuple, list[ResultRecord]] = {}
    for key, record in latest_by_config(rows, recipes=True).items():
        groups.setdefault(key[:-1], []).append(record)
    return {
        key: sorted(members, key=lambda r: recipe_of(r) != DEFAULT_RECIPE)
        for key, members in groups.items()
        if len(members) >= 2
    }


def _memory(record: ResultRecord) -> Optional[int]:
    return record.peak_mem_bytes


def _ratio(value: Optional[float], default: Optional[float]) -> str:
    if value is None or not default:
        return ""
    return f"{value / default:.2f}x"


def _of(record: Optional[ResultRecord], name: str) -> Optional[float]:
    return getattr(record, name) if record is not None else None


def _row(record: ResultRecord, default: Optional[ResultRecord]) -> list[str]:
    time = sec_per_batch(record)
    base_time = sec_per_batch(default) if default else None
    return config_cells(record) + [
        recipe_of(record),
        record.status,
        number(record.peak_mem_bytes, 2, 1e9),
        _ratio(record.peak_mem_bytes, _of(default, "peak_mem_bytes")),
        number(record.act_mem_bytes, 2, 1e9),
        _ratio(record.act_mem_bytes, _of(default, "act_mem_bytes")),
        number(time, 3, 1),
        _ratio(time, base_time),
        number(record.train_flops, 1, 1e9),
        _ratio(record.train_flops, _of(default, "train_flops")),
        number(record.recompute_flops, 1, 1e9),
        number(record.trainable_params, 2, 1e6),
        number(record.optim_state_bytes, 3, 1e9),
        number(record.compile_sec, 1, 1),
    ]


def recipes_table(rows: Sequence[ResultRecord]) -> Optional[Table]:
    """One line per recipe of each configuration measured under several recipes; None when there is none."""
    groups = recipe_groups(rows)
    if not groups:
        return None
    body = []
    for members in groups.values():
        default = next((r for r in members if recipe_of(r) == DEFAULT_RECIPE and r.status == "ok"), None)
        body += [_row(record, default) for record in members]
    return Table(
        title="Training recipes: memory, time and FLOPs against the default step",
        columns=[
            "device",
            "model",
            "batch",
            "seconds",
            "precision",
            "recipe",
            "status",
            "peak memory (GB)",
            "vs default",
            "activations (GB)",
            "vs default",
            "s/batch",
            "vs default",
            "train GFLOPs/step",
            "vs default",
            "recomputed GFLOPs",
            "trainable params (M)",
            "optimizer state (GB)",
            "compile (s)",
        ],
        rows=body,
        caption="vs default: the value over the default recipe's of the same device, model, batch, length and "
        "precision (0.43x: 57 % less). Train FLOPs include the forward work checkpointing runs again "
        "(recomputed). Peak memory names no source here: see the results table. GB = 1e9 bytes.",
    )


def _plot_group(groups: dict[tuple, list[ResultRecord]]) -> Optional[tuple[tuple, list[ResultRecord]]]:
    """The configuration to plot: the paper's if measured under several recipes, else the one with the most."""
    usable = {
        key: [r for r in members if r.status == "ok" and _memory(r) and sec_per_batch(r)]
        for key, members in groups.items()
    }
    usable = {key: members for key, members in usable.items() if len(members) >= 2}
    if not usable:
        return None
    paper = [
        key
        for key in usable
        if (key[1], key[2], key[3], key[4]) == (*FIG2_CONFIG[:2], length_key(FIG2_CONFIG[2]), FIG2_CONFIG[3])
    ]
    key = paper[0] if paper else max(usable, key=lambda k: len(usable[k]))
    return key, usable[key]


def memory_time_png(rows: Sequence[ResultRecord]) -> Optional[bytes]:
    """Peak memory (GB) against seconds per batch, one labelled point per recipe; None without two such rows."""
    chosen = _plot_group(recipe_groups(rows))
    if chosen is None:
        return None
    (device, model, batch, seconds, precision), members = chosen
    fig, (ax,) = new_figure(9, 5.5)
    for record in members:
        x, y = sec_per_batch(record) or 0.0, (_memory(record) or 0) / 1e9
        default = recipe_of(record) == DEFAULT_RECIPE
        ax.plot([x], [y], "s" if default else "o", color="#C44E52" if default else "#4C72B0")
        ax.annotate(recipe_of(record), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set_xlabel("seconds per batch (median)")
    ax.set_ylabel(f"peak memory (GB, {members[0].peak_mem_source or 'peak'})")
    ax.set_title(
        f"Training recipes: memory against time ({model}, batch {batch}, {seconds:g} s, {precision}, {device})"
    )
    # from zero, with room on the right for the last point's label
    ax.set_xlim(0, 1.3 * max(sec_per_batch(r) or 0.0 for r in members))
    ax.set_ylim(0, 1.1 * max((_memory(r) or 0) / 1e9 for r in members))
    ax.grid(alpha=0.3)
    return figure_png(fig)


def memory_time_caption(rows: Sequence[ResultRecord]) -> str:
    chosen = _plot_group(recipe_groups(rows))
    if chosen is None:
        return ""
    (device, model, batch, seconds, precision), members = chosen
    return (
        f"Peak memory against seconds per batch of each training recipe ({len(members)} recipes), {model}, "
        f"batch {batch}, {seconds:g} s, {precision}, {device}; the square is the default step"
    )
