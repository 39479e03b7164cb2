"""Is `profile`'s reported time the time of a plain training loop? Both in one run, same model and batch.

    python benchmarks/overhead.py [--model base] [--batch 4] [--seconds 5.5] [--repeats 5]

The plain loop: build the same model, AdamW, one warmup step, then time `repeats` steps with
time.perf_counter and nothing else. It runs before the profile and again after it, and the profile's median is
compared with the median of both loops' steps (target: within 3 %): a change of load during the run then hits
both sides instead of only the profile's (on a shared 2-core machine one other busy process slows a step by up
to 2x). Prints the load average before and after; compare only figures from one run.
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
    args = parser.parse_args()

    from w2vprof.measure.engine import ProfileConfig, profile_configuration

    print(f"load average at the start: {_load()}")
    before = plain_loop(args.model, args.batch, args.seconds, args.repeats, seed=0)
    profiled = profile_configuration(
        ProfileConfig(model=args.model, batch=args.batch, seconds=args.seconds, repeats=args.repeats, seed=0)
    ).record
    after = plain_loop(args.model, args.batch, args.seconds, args.repeats, seed=0)
    plain_median = statistics.median(before + after)
    print(f"plain loop before:        median {statistics.median(before):.3f} s  ({_seconds(before)})")
    print(f"w2vprof profile median:   {profiled.sec_per_batch_median:.3f} s")
    print(f"plain loop after:         median {statistics.median(after):.3f} s  ({_seconds(after)})")
    print(f"ratio profile / plain:    {profiled.sec_per_batch_median / plain_median:.3f}   (both loops' median)")
    print(f"load average at the end: {_load()}")


def _seconds(times: list[float]) -> str:
    return ", ".join(f"{t:.3f}" for t in times)


def _load() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


if __name__ == "__main__":
    main()
