"""Does telemetry sampling change the measured seconds per batch? Same configuration with and without it.

    python benchmarks/telemetry_overhead.py [--model base] [--batch 1] [--seconds 2] [--repeats 10]

Alternates the two runs twice (A B A B) to spread drift; prints each median and the ratio (target: within 2 %).
"""
from __future__ import annotations

import argparse
import statistics

from w2vprof.measure.engine import ProfileConfig, profile_configuration


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="base")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    medians = {True: [], False: []}
    energy_source = ""
    for telemetry in (True, False, True, False):
        record = profile_configuration(ProfileConfig(model=args.model, batch=args.batch, seconds=args.seconds,
                                                     repeats=args.repeats, telemetry=telemetry)).record
        medians[telemetry].append(record.sec_per_batch_median)
        energy_source = energy_source or record.energy_source
    with_t, without_t = statistics.mean(medians[True]), statistics.mean(medians[False])
    print(f"energy source here: {energy_source or 'none'}")
    print(f"median s/batch with telemetry:    {with_t:.4f} ({', '.join(f'{m:.4f}' for m in medians[True])})")
    print(f"median s/batch without telemetry: {without_t:.4f} ({', '.join(f'{m:.4f}' for m in medians[False])})")
    print(f"ratio with / without: {with_t / without_t:.3f} (target within 2 %)")


if __name__ == "__main__":
    main()
