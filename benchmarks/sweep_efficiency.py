"""Sweep efficiency: a sweep's wall time against the sum of its timed steps, for the two sweeps of issue 12.

    python benchmarks/sweep_efficiency.py                 # both sweeps, both ratios
    python benchmarks/sweep_efficiency.py --only grid     # or: --only b4
    python benchmarks/sweep_efficiency.py --breakdown     # also: where one configuration's time goes, in-process

1. grid: base, 1 and 2 s, batch 1 and 2, fp32, --repeats 5 (4 configurations). Target: wall <= 1.3 x timed.
2. b4:   base, batch 4, 5.5 s, fp32, --repeats 5, alone. Target: wall <= 1.15 x timed.

Wall time is the whole `w2vprof sweep` command as a user runs it (interpreter start to exit); timed is the sum of
every timed step in the results file (mean x repeats). Every configuration also runs one untimed measurement pass,
a full training step under the FLOP counter that doubles as the warmup, so no sweep can go below
(repeats + 1) / repeats without measuring less: the benchmark prints that floor beside each ratio.

The ratio is within one run, but a loaded machine stretches steps unevenly: the 1-minute load average is printed
before and after; compare ratios only from a quiet machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEPS = {
    "grid": ("base", "1,2", "1,2"),
    "b4": ("base", "5.5", "4"),
}
TARGETS = {"grid": 1.3, "b4": 1.15}


def run_sweep(model: str, seconds: str, batch: str, repeats: int, out: Path, extra: list[str]) -> float:
    """Wall seconds of one `w2vprof sweep` command."""
    start = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "w2vprof.cli.main",
            "sweep",
            "--model",
            model,
            "--seconds",
            seconds,
            "--batch",
            batch,
            "--precision",
            "fp32",
            "--repeats",
            str(repeats),
            "--out",
            str(out),
            "--quiet",
            *extra,
        ],
        check=True,
    )
    return time.monotonic() - start


def report(name: str, wall: float, out: Path, repeats: int) -> None:
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    timed = sum(float(r["sec_per_batch_mean"]) * int(r["repeats"]) for r in rows if r["sec_per_batch_mean"])
    floor = (repeats + 1) / repeats
    print(f"{name}: {len(rows)} configurations, repeats {repeats}; statuses {sorted({r['status'] for r in rows})}")
    print(f"  sum of timed steps: {timed:.1f} s; sweep wall time: {wall:.1f} s")
    print(
        f"  ratio wall / timed: {wall / timed:.2f} (target <= {TARGETS[name]}; floor with one untimed pass "
        f"per configuration: {floor:.2f})"
    )


def breakdown(model: str, batch: int, seconds: float, repeats: int) -> None:
    """Where one configuration's time goes, step by step, in this process (the child runs the same steps)."""
    import torch

    from w2vprof.measure import engine
    from w2vprof.measure.counting import measurement_pass
    from w2vprof.measure.step import TrainingStep
    from w2vprof.measure.timing import timed_steps
    from w2vprof.models.layers import wav2vec2_layers as model_layers
    from w2vprof.records import ResultRecord

    config = engine.ProfileConfig(model=model, batch=batch, seconds=seconds, repeats=repeats, device="cpu")
    marks = [("start", time.perf_counter())]

    def mark(name: str) -> None:
        marks.append((name, time.perf_counter()))

    result = engine.ProfileResult(record=ResultRecord())
    timed_batches, measure_batch = engine.prepare_batches(config, "cpu", result)
    mark("batches")
    built = engine.build_measured_model(config, "cpu")
    mark("model build")
    step = TrainingStep.create(built.fresh(), "cpu", "fp32")
    layers = model_layers(step.model)
    measurement_pass(step, layers, measure_batch)
    mark("measurement pass (counts as warmup)")
    times = timed_steps(step, timed_batches, "cpu", telemetry=False).times
    mark(f"{repeats} timed steps")
    print(f"breakdown: {model} batch {batch} {seconds:g} s, {torch.get_num_threads()} threads")
    for (_, before), (name, after) in zip(marks, marks[1:]):
        print(f"  {name:40s} {after - before:7.2f} s")
    print(
        f"  timed steps: {', '.join(f'{t:.2f}' for t in times)} s; pass / median step: "
        f"{(marks[3][1] - marks[2][1]) / sorted(times)[len(times) // 2]:.2f}"
    )


def import_seconds() -> float:
    """A fresh interpreter importing what a configuration child needs (what the fork server saves each one)."""
    from w2vprof.sweep.child import MEASUREMENT_MODULES
    from w2vprof.sweep.launch import PRELOAD

    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import " + ", ".join(PRELOAD + MEASUREMENT_MODULES)], check=True)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=sorted(SWEEPS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--breakdown", action="store_true")
    parser.add_argument("--model", default="base", help="the grid's model (tiny: start-up dominates)")
    parser.add_argument("--threads", type=int, help="torch threads (1 keeps a loaded machine's timings proportional)")
    args = parser.parse_args()
    extra = ["--threads", str(args.threads)] if args.threads else []
    print(f"cores: {os.cpu_count()}; load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="w2vprof-efficiency-") as folder:
        for name in [args.only] if args.only else list(SWEEPS):
            out = Path(folder) / f"{name}.csv"
            _, seconds, batch = SWEEPS[name]
            wall = run_sweep(args.model, seconds, batch, args.repeats, out, extra)
            report(name, wall, out, args.repeats)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.breakdown:
        print(f"fresh interpreter importing a child's modules: {import_seconds():.2f} s")
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        breakdown(args.model, 1, 1.0, args.repeats)
        breakdown(args.model, 4, 5.5, args.repeats)


if __name__ == "__main__":
    main()
