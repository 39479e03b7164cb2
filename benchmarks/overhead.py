"""Is `profile`'s reported time the time of a plain training loop? Both in one run, same model and batch.

    python benchmarks/overhead.py [--model base] [--batch 4] [--seconds 5.5] [--repeats 5]

The plain loop: build the same model, AdamW, one warmup step, then time `repeats` steps with
time.perf_counter and nothing else. Prints both medians and their ratio (target: within 3 %).
"""

from __future__ import annotations

import argparse
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

    plain = plain_loop(args.model, args.batch, args.seconds, args.repeats, seed=0)
    profiled = profile_configuration(
        ProfileConfig(model=args.model, batch=args.batch, seconds=args.seconds, repeats=args.repeats, seed=0)
    ).record
    plain_median = statistics.median(plain)
    print(f"plain loop median:        {plain_median:.3f} s  ({', '.join(f'{t:.3f}' for t in plain)})")
    print(f"w2vprof profile median:   {profiled.sec_per_batch_median:.3f} s")
    print(f"ratio profile / plain:    {profiled.sec_per_batch_median / plain_median:.3f}")


if __name__ == "__main__":
    main()
