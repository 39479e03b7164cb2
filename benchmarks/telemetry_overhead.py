"""Does telemetry sampling change the measured seconds per batch? (Acceptance: by no more than 2 %.)

    python benchmarks/telemetry_overhead.py [--steps 30] [--rounds 6] [--size 768] [--interval 0.1] [--real-root]

Times a CPU-bound torch loop (a matmul "training step": forward, backward, SGD update) step by step, in rounds
that alternate without / with a running TelemetrySampler (A B B A A B ...) so drift hits both alike, and prints both
medians and their ratio.

By default the sampler reads a generated fake Jetson tree (INA3221 rails, thermal zones, cpufreq, devfreq), so its
background thread really polls every --interval seconds even on a machine with no sensors: the worst case of
this code path. --real-root samples this machine's own sources instead (on a VM with none, there is no thread).
It also prints the CPU cost of one poll: on a shared machine step-time medians are noisy (rerun A/A to see how
much), while the poll cost / interval bounds what sampling can take from the timed steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

FAKE_JETSON = {
    "etc/nv_tegra_release": "# R36 (release), REVISION: 3.0, GCID: 1, BOARD: generic\n",
    "proc/device-tree/model": "NVIDIA Jetson Orin Nano Developer Kit\x00",
    "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1/in1_label": "VDD_IN\n",
    "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1/in1_input": "5000\n",
    "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1/curr1_input": "1500\n",
    "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1/in2_label": "VDD_CPU_GPU_CV\n",
    "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1/in2_input": "5000\n",
    "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1/curr2_input": "300\n",
    **{f"sys/class/thermal/thermal_zone{i}/temp": f"{45000 + i * 500}\n" for i in range(8)},
    **{f"sys/devices/system/cpu/cpu{i}/cpufreq/scaling_cur_freq": "1510400\n" for i in range(6)},
}


def build_fake_jetson(root: Path) -> None:
    for relative, text in FAKE_JETSON.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def timed_steps(steps: int, size: int, sampler=None) -> list[float]:
    import torch

    torch.manual_seed(0)
    weight = torch.randn(size, size, requires_grad=True)
    inputs = torch.randn(size, size)
    times = []
    if sampler is not None:
        sampler.start()
    for _ in range(steps):
        start = time.perf_counter()
        loss = (inputs @ weight).relu().sum()
        loss.backward()
        with torch.no_grad():
            weight -= 1e-6 * weight.grad
            weight.grad = None
        times.append(time.perf_counter() - start)
    if sampler is not None:
        fields = sampler.stop(steps=steps)
        assert fields["energy_source"], "the sampler should have measured something in this benchmark"
    return times


def poll_cost_s(sampler, polls: int = 300):
    """Seconds one background poll takes (what the thread adds per interval), or None with nothing to poll.

    This does not depend on other processes' load the way step timings do on a shared machine.
    """
    if not sampler._needs_thread():
        return None
    start = time.perf_counter()
    for _ in range(polls):
        if sampler.energy is not None and sampler.energy.needs_polling:
            sampler.energy.poll()
        sampler._poll_readings()
    return (time.perf_counter() - start) / polls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each kind, alternating")
    parser.add_argument("--size", type=int, default=768, help="matrix size (768: about 20-60 ms a step on a CPU)")
    parser.add_argument("--interval", type=float, default=0.1, help="sampler polling interval, seconds")
    parser.add_argument("--real-root", action="store_true", help="sample this machine's sources, not a fake Jetson")
    args = parser.parse_args()

    from w2vprof.devices.telemetry import TelemetrySampler

    with tempfile.TemporaryDirectory() as folder:
        root = "/" if args.real_root else folder
        if not args.real_root:
            build_fake_jetson(Path(folder))
        timed_steps(5, args.size)  # warm up torch's kernels and allocator
        without, with_sampler = [], []
        polls = ""
        for round_index in range(args.rounds):
            sampler = TelemetrySampler("cpu", root=root, interval_s=args.interval)
            polls = ", ".join(f"{k}={v[0] or '-'}" for k, v in sampler.describe().items())
            # A B B A ...: the order flips each round, so neither kind always runs first (warm caches, drift).
            for with_telemetry in (False, True) if round_index % 2 == 0 else (True, False):
                if with_telemetry:
                    with_sampler += timed_steps(args.steps, args.size, sampler if sampler.energy else None)
                else:
                    without += timed_steps(args.steps, args.size)
        poll_s = poll_cost_s(TelemetrySampler("cpu", root=root, interval_s=args.interval))
    median_without, median_with = statistics.median(without), statistics.median(with_sampler)
    print(
        f"load average over the last minute: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (others' work is noise)"
    )
    print(f"sampler sources ({'this machine' if args.real_root else 'fake Jetson tree'}): {polls}")
    print(f"steps: {len(without)} without, {len(with_sampler)} with (interval {args.interval} s)")
    print(f"median s/step without telemetry: {median_without:.5f}")
    print(f"median s/step with telemetry:    {median_with:.5f}")
    ratio = median_with / median_without
    if poll_s is not None:
        share = poll_s / args.interval * 100
        print(f"cost of one background poll: {poll_s * 1000:.3f} ms = {share:.2f} % of one CPU at this interval")
    print(f"ratio with / without: {ratio:.4f} ({(ratio - 1) * 100:+.2f} %; acceptance: within 2 %)")


if __name__ == "__main__":
    main()
