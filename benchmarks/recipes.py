"""Issue 13's acceptance checks for training recipes and `plan`, in one run of real sweeps.

    python benchmarks/recipes.py [--model base|tiny|auto] [--batch 4] [--seconds 5.5] [--lengths 1,2,4,5.5]
                                 [--target 8] [--repeats 3] [--compile-timeout 1800] [--out FOLDER]

Every configuration runs as `w2vprof sweep` runs it (one child process each, so each peak memory is its own), into
one results file (resumed between the sweeps: finished rows are kept):
1. the recipes at --seconds: default, ckpt=transformer, freeze=cnn, accum=4, optim=sgd, compile (the last with a
   time limit: a compiler that hangs is a `timeout` row, not a hung benchmark);
2. the default and ckpt=transformer at --lengths and at --target, for `plan`.
Then it prints the issue's checks: activation bytes, per-layer rows, recomputed FLOPs against the transformer
layers' forward, backward FLOPs saved by freezing against the CNN's, accumulation's activations and FLOPs,
optimizer state per trainable parameter, compile time, seconds per batch against the default; and `plan`'s
predictions at --target from the rows at --lengths against the measured --target rows (targets: memory within
10 %, time within 15 %).

Heavy with base (a few minutes per configuration on a 2-core CPU): --model auto takes base when the 1-minute load
average is under 3, else tiny (and says so). Seconds per batch are only meaningful on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from w2vprof.analysis.feasibility import PARTS, training_memory
from w2vprof.analysis.plan import plan_recipes, target_for
from w2vprof.devices.profiles import load_profiles
from w2vprof.records import LayerRecord, ResultRecord, length_key, read_layers_csv, read_results_csv, recipe_of

#: (recipe, sweep flags) at --seconds; compile gets --timeout.
RECIPES = [
    ("default", []),
    ("ckpt=transformer", ["--checkpointing", "transformer"]),
    ("freeze=cnn", ["--freeze", "cnn"]),
    ("accum=4", ["--accumulate", "4"]),
    ("optim=sgd", ["--optimizer", "sgd"]),
    ("compile", ["--compile"]),
]


def sweep(
    results: Path, args: argparse.Namespace, seconds: str, flags: List[str], timeout: Optional[float] = None
) -> None:
    command = [
        sys.executable,
        "-m",
        "w2vprof.cli.main",
        "sweep",
        "--model",
        args.model,
        "--batch",
        str(args.batch),
        "--seconds",
        seconds,
        "--precision",
        "fp32",
        "--repeats",
        str(args.repeats),
        "--device",
        "cpu",
        "--out",
        str(results),
        "--quiet",
        *flags,
    ]
    if results.exists():
        command.append("--resume")
    if timeout is not None:
        command += ["--timeout", str(timeout)]
    print("$", " ".join(command[3:]), flush=True)
    subprocess.run(command, check=True)


def rows_by_recipe(results: Path, seconds: float) -> Dict[str, ResultRecord]:
    return {
        recipe_of(r): r
        for r in read_results_csv(results)
        if length_key(r.seconds) == length_key(seconds) and r.precision == "fp32"
    }


def layers_of(results: Path, record: ResultRecord) -> List[LayerRecord]:
    return read_layers_csv(results.parent / record.layers_file) if record.layers_file else []


def ratio(value: Optional[float], base: Optional[float]) -> str:
    return f"{value / base:.2f}x" if value is not None and base else "n/a"


def report_recipes(results: Path, args: argparse.Namespace) -> None:
    rows = rows_by_recipe(results, args.seconds)
    default = rows["default"]
    base_layers = {layer.layer: layer for layer in layers_of(results, default)}
    print(f"\n== recipes: {args.model}, batch {args.batch}, {args.seconds:g} s, fp32")
    for recipe, _ in RECIPES:
        r = rows.get(recipe)
        if r is None or r.status != "ok":
            print(f"{recipe:18s} {r.status if r else 'missing'}: {r.error if r else ''}")
            continue
        time, base_time = r.sec_per_batch_median, default.sec_per_batch_median
        print(
            f"{recipe:18s} activations {r.act_mem_bytes / 1e9:.3f} GB "
            f"({ratio(r.act_mem_bytes, default.act_mem_bytes)}), peak {r.peak_mem_bytes / 1e9:.3f} GB "
            f"({ratio(r.peak_mem_bytes, default.peak_mem_bytes)}), s/batch {time:.3f} ({ratio(time, base_time)}), "
            f"train GFLOPs {r.train_flops / 1e9:.1f} ({ratio(r.train_flops, default.train_flops)})"
        )
    check_checkpointing(results, rows.get("ckpt=transformer"), base_layers)
    check_freezing(results, rows.get("freeze=cnn"), default, base_layers)
    accumulated = rows.get("accum=4")
    if accumulated is not None and accumulated.status == "ok":
        print(
            f"accum=4: activations {ratio(accumulated.act_mem_bytes, default.act_mem_bytes)} of the default's "
            f"(target <= 0.30x); train FLOPs {ratio(accumulated.train_flops, default.train_flops)} "
            "(target 1.00x +- 1 %)"
        )
    sgd = rows.get("optim=sgd")
    if sgd is not None and sgd.status == "ok":
        print(
            f"optim=sgd: state {sgd.optim_state_bytes / sgd.trainable_params:.3f} bytes per trainable parameter "
            f"(target 4); adamw {default.optim_state_bytes / default.trainable_params:.3f} (target 8)"
        )
    compiled = rows.get("compile")
    if compiled is not None:
        detail = f"compile_sec {compiled.compile_sec:.1f} s" if compiled.compile_sec is not None else compiled.error
        print(f"compile: {compiled.status}, {detail}")


def check_checkpointing(results: Path, r: Optional[ResultRecord], base_layers: Dict[str, LayerRecord]) -> None:
    if r is None or r.status != "ok":
        return
    layers = [layer for layer in layers_of(results, r) if layer.kind == "transformer"]
    forward = sum(layer.fwd_flops for layer in layers)
    largest = max(layer.act_mem_bytes for layer in layers)
    before = max(base_layers[layer.layer].act_mem_bytes for layer in layers)
    print(
        f"ckpt=transformer: activations {r.act_mem_bytes / 1e9:.3f} GB (target <= 1.0 GB for base b4 5.5 s); "
        f"largest transformer row {largest / 1e6:.1f} MB (was {before / 1e6:.1f} MB; target < 10 MB); "
        f"recompute {r.recompute_flops / 1e9:.2f} GFLOPs vs the layers' forward {forward / 1e9:.2f} "
        f"({(r.recompute_flops - forward) / forward:+.2%}, target within 2 %)"
    )


def check_freezing(
    results: Path, r: Optional[ResultRecord], default: ResultRecord, base_layers: Dict[str, LayerRecord]
) -> None:
    if r is None or r.status != "ok":
        return
    cnn = [layer for layer in layers_of(results, r) if layer.kind == "cnn"]
    cnn_backward = sum(base_layers[layer.layer].bwd_flops for layer in cnn)
    saved = default.bwd_flops - r.bwd_flops
    cnn_params = sum(base_layers[layer.layer].params for layer in cnn)
    exact = r.trainable_params == default.trainable_params - cnn_params
    print(
        f"freeze=cnn: CNN rows' activations {sum(layer.act_mem_bytes for layer in cnn)} bytes (target 0); "
        f"backward saved {saved / 1e9:.2f} GFLOPs vs the CNN's {cnn_backward / 1e9:.2f} "
        f"({(saved - cnn_backward) / cnn_backward:+.2%}, target within 2 %); trainable {r.trainable_params:,} = "
        f"{default.trainable_params:,} - {cnn_params:,}: {exact}; "
        f"s/batch {ratio(r.sec_per_batch_median, default.sec_per_batch_median)} (target <= 0.90x)"
    )


def report_plan(results: Path, args: argparse.Namespace) -> None:
    rows = read_results_csv(results)
    lengths = {length_key(s) for s in args.lengths}
    fitted = [r for r in rows if length_key(r.seconds) in lengths and r.precision == "fp32"]
    measured = rows_by_recipe(results, args.target)
    target = target_for(load_profiles(), "this machine", 10**15, args.model, args.batch, args.target, 1.0)
    plan = plan_recipes(fitted, target)
    print(f"\n== plan: {args.target:g} s predicted from {sorted(lengths)} s, measured at {args.target:g} s")
    for row in plan.rows:
        real = measured.get(row.recipe)
        if real is None or real.status != "ok" or row.sec_per_batch is None:
            print(f"{row.recipe:18s} no measured {args.target:g} s row to compare")
            continue
        # the figure the fit was made of (feasibility's: the device's peak), measured at the target
        measured_memory = next(v for k, v in training_memory(real).items() if k != PARTS)
        memory_error = row.peak_mem_gb * 1e9 / measured_memory - 1
        time_error = row.sec_per_batch / real.sec_per_batch_median - 1
        print(
            f"{row.recipe:18s} peak predicted {row.peak_mem_gb:.3f} GB, measured {measured_memory / 1e9:.3f} GB "
            f"({memory_error:+.1%}, target within 10 %); s/batch predicted {row.sec_per_batch:.3f}, measured "
            f"{real.sec_per_batch_median:.3f} ({time_error:+.1%}, target within 15 %); fit {row.memory_fit}"
        )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="auto")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.5)
    parser.add_argument("--lengths", type=lambda t: [float(x) for x in t.split(",")], default=[1, 2, 4, 5.5])
    parser.add_argument("--target", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile-timeout", type=float, default=1800.0)
    parser.add_argument("--out", type=Path, default=None, help="Folder for the results (default: a temporary one).")
    args = parser.parse_args()
    if args.model == "auto":
        load = os.getloadavg()[0]
        args.model = "base" if load < 3 else "tiny"
        print(
            f"1-minute load average {load:.1f}: measuring {args.model}"
            + ("" if args.model == "base" else " (base needs an idle machine: --model base to insist)")
        )
    return args


def main() -> None:
    args = parse()
    folder = args.out or Path(tempfile.mkdtemp(prefix="w2vprof-recipes-"))
    folder.mkdir(parents=True, exist_ok=True)
    results = folder / "results.csv"
    lengths = sorted({*args.lengths, args.seconds, args.target})
    sweep(results, args, ",".join(f"{s:g}" for s in lengths), ["--checkpointing", "none,transformer"])
    for recipe, flags in RECIPES[2:]:
        timeout = args.compile_timeout if recipe == "compile" else None
        sweep(results, args, f"{args.seconds:g}", flags, timeout)
    report_recipes(results, args)
    report_plan(results, args)
    print(f"\nresults: {results}")


if __name__ == "__main__":
    main()
