"""How long does `summary` take? The meta-device count against the real pass it replaced, each in a fresh process.

    python benchmarks/summary_speed.py [--model large] [--seconds 5.5] [--runs 2]

Prints, per run: the whole command (`w2vprof summary ... --format csv`: process start, imports, count, output),
the library call alone (`summarize`, in a process that has imported torch already) and the real CPU pass the
count used to be (same process shape). Wall and CPU seconds (CPU: user + system of the process, which counts
every thread; on a loaded machine wall time includes waiting for a core, CPU time much less so). The peak RSS
of each process in MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

LIBRARY = """
import json, resource, sys, time
import torch, torchaudio.models
from w2vprof.measure.summary import summarize
wall, cpu = time.perf_counter(), time.process_time()
if sys.argv[3] == "meta":
    summarize(sys.argv[1], float(sys.argv[2]))
else:
    from w2vprof.measure.flops import count_flops
    from w2vprof.models import build_model
    model = build_model(sys.argv[1]).eval()
    with torch.no_grad(), count_flops():
        model(torch.zeros(1, int(round(float(sys.argv[2]) * 16000))), inference_only=True)
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

COMMAND = """
import resource, subprocess, sys, time
wall = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f'{{"wall": {time.perf_counter() - wall}, "cpu": {usage.ru_utime + usage.ru_stime}, '
      f'"rss_mb": {usage.ru_maxrss / 1024}}}')
"""


def run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="large")
    parser.add_argument("--seconds", default="5.5")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    cli = [
        sys.executable,
        "-m",
        "w2vprof.cli.main",
        "summary",
        "--model",
        args.model,
        "--seconds",
        args.seconds,
        "--format",
        "csv",
    ]
    for index in range(args.runs):
        rows = {
            "command (meta)": run(COMMAND, *cli),
            "library call (meta)": run(LIBRARY, args.model, args.seconds, "meta"),
            "library call (real pass)": run(LIBRARY, args.model, args.seconds, "real"),
        }
        for name, r in rows.items():
            print(
                f"run {index + 1}  {name:26s} wall {r['wall']:6.2f} s  cpu {r['cpu']:6.2f} s  rss {r['rss_mb']:6.0f} MB"
            )


if __name__ == "__main__":
    main()
