"""Is `profile`'s reported time the time of a plain training loop? Both in one run, same model and batch.

    python benchmarks/overhead.py [--model base] [--batch 4] [--seconds 5.5] [--repeats 5] [--rounds 2]

The plain loop: build the same model, AdamW, one warmup step, then time `repeats` steps with
time.perf_counter and nothing else. Plain loops and profiles alternate, A B A B ... A (`rounds` profiles, one more
plain loop), and the median of every profile's reported median is compared with the median of every plain step
(target: within 3 %). Alternating matters here: on a shared 2-core VM one other busy process slows a step by up to
2x and a quiet spell speeds a whole block, so a single before/after pair can differ by 10 % either way with nothing
changed (one run here: 0.865, the next 1.0). Prints the load average before and after and every block's figures;
compare only figures from one run.

Then the sharper check (`--pairs N`, default 6; 0 skips it): one model, one optimizer, one batch, and N pairs of
steps, each pair a plain step then the engine's own timed step (`timing.time_one_step` on a `TrainingStep`,
the code every headline median comes from), back to back. A change of load hits both halves of a pair, so the
median of the pairs' ratios shows what the timed path costs over a bare step, free of the drift between blocks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def plain_loop(model_name: str, batch: int, seconds: float, repeats: int, seed: int) -> list[float]:
    from w2vprof.models import build_model

    torch.manual_seed(seed)
    model = build_model(model_name).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    samples = int(round(seconds * 16000))
    waveforms = 0.1 * torch.randn(batch, samples)
    lengths = torch.full((batch,), samples)

    def step() -> None:
        loss = model(waveforms, lengths).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warmup
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="base")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="profiles, each between two plain loops")
    parser.add_argument("--pairs", type=int, default=6, help="plain step / engine step pairs on one model (0: none)")
    args = parser.parse_args()

    from w2vprof.measure.engine import ProfileConfig, profile_configuration

    print(f"load average at the start: {_load()}")
    plain_steps: list[float] = []
    profile_medians: list[float] = []
    for round_index in range(args.rounds + 1 if args.rounds else 0):
        times = plain_loop(args.model, args.batch, args.seconds, args.repeats, seed=0)
        plain_steps += times
        print(f"plain loop {round_index + 1}:  median {statistics.median(times):.3f} s  ({_seconds(times)})")
        if round_index == args.rounds:
            break
        config = ProfileConfig(model=args.model, batch=args.batch, seconds=args.seconds, repeats=args.repeats, seed=0)
        record = profile_configuration(config).record
        profile_medians.append(record.sec_per_batch_median)
        print(f"profile {round_index + 1}:     median {record.sec_per_batch_median:.3f} s")
    if profile_medians:
        plain_median = statistics.median(plain_steps)
        profile_median = statistics.median(profile_medians)
        print(f"plain steps' median {plain_median:.3f} s; profiles' median {profile_median:.3f} s")
        print(f"ratio profile / plain:    {profile_median / plain_median:.3f}   (target 0.97-1.03)")
    if args.pairs:
        alternate_steps(args.model, args.batch, args.seconds, args.pairs)
    print(f"load average at the end: {_load()}")


def alternate_steps(model_name: str, batch: int, seconds: float, pairs: int) -> None:
    """`pairs` pairs of (plain step, the engine's timed step) on one model and batch: the median pair ratio."""
    from w2vprof.measure import engine
    from w2vprof.measure.memory import StepPeakMemory
    from w2vprof.measure.step import TrainingStep
    from w2vprof.measure.timing import time_one_step
    from w2vprof.records import ResultRecord

    config = engine.ProfileConfig(model=model_name, batch=batch, seconds=seconds, repeats=1, seed=0)
    (timed_batch,), _ = engine.prepare_batches(config, "cpu", engine.ProfileResult(record=ResultRecord()))
    step = TrainingStep.create(engine.build_measured_model(config, "cpu").fresh(), "cpu", "fp32")
    memory = StepPeakMemory("cpu")

    def plain_step() -> float:
        start = time.perf_counter()
        loss = step.model(timed_batch.waveforms, timed_batch.lengths).loss
        loss.backward()
        step.optimizer.step()
        step.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    step(timed_batch)  # warmup: AdamW's state is allocated
    plain, timed = [], []
    for _ in range(pairs):
        plain.append(plain_step())
        timed.append(time_one_step(step, timed_batch, "cpu", memory))
    ratios = [t / p for p, t in zip(plain, timed)]
    print(f"pairs (plain, engine):    {', '.join(f'({p:.3f}, {t:.3f})' for p, t in zip(plain, timed))}")
    listed = ", ".join(f"{r:.3f}" for r in ratios)
    print(f"engine / plain per pair:  median {statistics.median(ratios):.3f}  ({listed})")


def _seconds(times: list[float]) -> str:
    return ", ".join(f"{t:.3f}" for t in times)


def _load() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


if __name__ == "__main__":
    main()
