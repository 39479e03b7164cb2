"""Sweep efficiency: wall time of a 4-configuration base sweep against the sum of its timed steps.

    python benchmarks/sweep_efficiency.py [--model base] [--repeats 5] [--out /tmp/eff.csv]

Target: wall <= 1.5 x sum(timed steps). The overheads are child start-up (Python + torch import), model
building and the measurement pass, about 4-5 s per configuration on a 2-core CPU; so the ratio depends on how
long the timed steps are (default: 2 and 5.5 s x batch 1 and 4, about 2 minutes for base).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from w2vprof.records import read_results_csv


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="base")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", default="2,5.5")
    parser.add_argument("--batch", default="1,4")
    parser.add_argument("--out", default="/tmp/w2vprof-sweep-efficiency.csv")
    args = parser.parse_args()
    out = Path(args.out)
    for stale in (out, out.with_name(out.stem + ".layers")):
        if stale.is_file():
            stale.unlink()
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "w2vprof.cli.main", "sweep", "--model", args.model, "--seconds", args.seconds,
         "--batch", args.batch, "--precision", "fp32", "--repeats", str(args.repeats), "--out", str(out), "--quiet"],
        check=True,
    )
    wall = time.monotonic() - start
    timed = 0.0
    for record in read_results_csv(out):
        timed += record.sec_per_batch_mean * record.repeats
    print(f"configurations: 4, repeats: {args.repeats}")
    print(f"sum of timed steps: {timed:.1f} s")
    print(f"sweep wall time:    {wall:.1f} s")
    print(f"ratio wall / timed: {wall / timed:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
