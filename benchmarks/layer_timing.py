"""Issue 14's acceptance checks for time per layer and calibration, in one run.

    python benchmarks/layer_timing.py [--model base] [--batch 4] [--seconds 5.5] [--repeats 5]
                                      [--layer-repeats 3] [--precision fp32] [--skip-calibrate]

1. The per-layer rows (fwd_sec + bwd_sec, plus `other`: together the median instrumented step) against the median
   of the headline timed steps, run just before them on the same model and batches (target: within 10 %); and
   against bare steps timed in alternation with the instrumented ones (a bare step before each), which a change of
   load between the two blocks cannot skew: that ratio is the instrumentation's own cost.
2. The CNN encoder's share of step time against its share of the step's FLOPs (on a CPU the time share is the
   larger: its first layers are bound by memory traffic, not arithmetic).
3. Per layer: seconds forward and backward, achieved FLOP/s and its fraction of the calibrated fp32 matmul rate
   (transformer layers should reach a larger fraction than cnn.0).
4. Calibration: the fp32 matmul rate next to a plain 2048x2048 torch.mm loop timed beside it (target: within
   20 %), the mixed-dtype rate and the copy bandwidth.
Heavy with the defaults (base, batch 4, 5.5 s): minutes on a small CPU. Timings are only meaningful on an
otherwise idle machine; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass

import torch

from w2vprof.devices.calibrate import Calibration, calibrate
from w2vprof.measure.counting import layer_rows, measurement_pass
from w2vprof.measure.layer_timing import OTHER, LayerTiming, time_layers, with_flop_rates
from w2vprof.measure.step import TrainingStep
from w2vprof.measure.timing import timed_steps, warm_up
from w2vprof.models import PRETRAIN, get_family
from w2vprof.workload import Batch, make_workload


@dataclass
class Measured:
    headline: list[float]  # seconds of the headline timed steps
    alternated: list[float]  # seconds of the bare steps timed before each instrumented step
    timing: LayerTiming  # with FLOP rates
    flops: dict[str, int]  # layer -> forward + backward FLOPs
    train_flops: int  # the step's FLOPs (forward, backward, optimizer)
    cnn_encoder: list[str]  # the CNN encoder's layers


def measure(args: argparse.Namespace) -> Measured:
    torch.manual_seed(0)
    family = get_family(args.model)
    model = family.build(PRETRAIN).train()
    step = TrainingStep.create(model, "cpu", args.precision)
    layers = family.layers(model)
    stream = make_workload(args.seconds).batches(args.batch, 0)
    batches = [next(stream) for _ in range(args.repeats)]
    counts = measurement_pass(step, layers, batches[0])
    rows = layer_rows(model, layers, counts)
    warm_up(step, batches[0], 1)
    headline = timed_steps(step, batches, "cpu", telemetry=False).times
    alternated: list[float] = []

    def bare_step(batch: Batch) -> None:
        alternated.extend(timed_steps(step, [batch], "cpu", telemetry=False).times)

    timing = time_layers(step, layers, batches, "cpu", args.layer_repeats, before_each=bare_step)
    timing = with_flop_rates(timing, {r.layer: r.fwd_flops for r in rows}, {r.layer: r.bwd_flops for r in rows})
    flops = {r.layer: r.fwd_flops + r.bwd_flops for r in rows}
    cnn = [layer.name for layer in layers if family.group_of(layer) == "cnn_encoder"]
    return Measured(headline, alternated, timing, flops, counts.train_flops, cnn)


def report_sums(measured: Measured) -> None:
    timing, median = measured.timing, statistics.median(measured.headline)
    rows_sum = sum(row.sec for row in timing.rows)
    alternated = statistics.median(measured.alternated)
    print(f"headline timed steps:   median {median:.3f} s  ({_seconds(measured.headline)})")
    print(
        f"layer rows + other:     {rows_sum:.3f} s  (other {timing.row(OTHER).sec:.3f} s; instrumented steps: "
        f"{_seconds(timing.samples['step'])}, {timing.wall_sec:.3f} s with bookkeeping)"
    )
    print(f"ratio (rows + other) / headline median:  {rows_sum / median:.3f}   (target 0.90-1.10)")
    print(f"bare steps alternated with them:        median {alternated:.3f} s  ({_seconds(measured.alternated)})")
    print(f"ratio (rows + other) / alternated bare: {rows_sum / alternated:.3f}   (the instrumentation's own cost)")


def _seconds(times: list[float]) -> str:
    return ", ".join(f"{t:.3f}" for t in times)


def report_cnn_share(measured: Measured) -> None:
    cnn = measured.cnn_encoder
    time_share = sum(measured.timing.row(name).sec for name in cnn) / measured.timing.step_sec
    flop_share = sum(measured.flops[name] for name in cnn) / measured.train_flops
    print(f"CNN encoder ({', '.join(cnn)}): {time_share:.1%} of step time, {flop_share:.1%} of step FLOPs")


def report_layers(timing: LayerTiming, flops: dict[str, int], peak: float | None) -> None:
    print(f"{'layer':20s} {'fwd s':>8s} {'bwd s':>8s} {'share':>6s} {'fwd GF/s':>9s} {'bwd GF/s':>9s} {'of peak':>7s}")
    for row in timing.rows:
        rate = flops.get(row.layer, 0) / row.sec if row.sec > 0 and row.layer != OTHER else None
        fraction = f"{rate / peak:7.1%}" if rate and peak else f"{'':7s}"
        print(
            f"{row.layer:20s} {_cell(row.fwd_sec, 1, '8.3f')} {_cell(row.bwd_sec, 1, '8.3f')} "
            f"{row.time_share:6.1%} {_cell(row.fwd_flops_per_sec, 1e9, '9.1f')} "
            f"{_cell(row.bwd_flops_per_sec, 1e9, '9.1f')} {fraction}"
        )


def _cell(value: float | None, scale: float, spec: str) -> str:
    width = int(spec.split(".")[0])
    return format(value / scale, spec) if value is not None else " " * width


def plain_mm_rates(n: int = 2048, products: int = 5) -> tuple[float, float]:
    """FLOP/s of a plain loop of n x n fp32 torch.mm after one warmup product: (whole loop, its fastest product)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(products):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return products * 2 * n**3 / sum(times), 2 * n**3 / min(times)


def report_calibration() -> Calibration:
    calibration = calibrate("cpu")
    loop, fastest = plain_mm_rates()
    print("\n".join(calibration.summary_lines()))
    print(
        f"plain 2048^2 torch.mm loop: {loop / 1e9:.1f} GFLOP/s (its fastest product {fastest / 1e9:.1f}); "
        f"calibrated / loop = {calibration.peak_flops_fp32_measured / loop:.3f}   (target 0.80-1.20)"
    )
    return calibration


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="base")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layer-repeats", type=int, default=3)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "mixed"))
    parser.add_argument("--skip-calibrate", action="store_true")
    args = parser.parse_args()
    print(f"{args.model}, batch {args.batch}, {args.seconds} s, {args.precision}, {torch.get_num_threads()} threads")
    print(f"load average at the start: {_load()}")
    peak = None if args.skip_calibrate else report_calibration().peak_flops_fp32_measured
    measured = measure(args)
    report_sums(measured)
    report_cnn_share(measured)
    report_layers(measured.timing, measured.flops, peak)
    print(f"load average at the end: {_load()}")


def _load() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


if __name__ == "__main__":
    main()
