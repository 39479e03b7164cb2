"""The comparisons of .ci/arm64-emulated.sh: what the emulated aarch64 run wrote against x86's figures.

Standard library only (it runs in the userland's Python, and in tests/test_arm64_emulated.py on the committed
results). Each check prints what it compared (and appends it to the file named by $W2VPROF_CHECKS, which the
script prints in its summary), and exits 1 on any difference.

    arm64_checks.py doctor DOCTOR_JSON PI_LOOK(0|1)
    arm64_checks.py summary SUMMARY_CSV X86_SUMMARY_CSV       params exactly, inference FLOPs within 0.01 %
    arm64_checks.py rows RESULTS_CSV X86_RESULTS_CSV GOLDEN_JSON   status ok; FLOPs and bytes equal to x86's
    arm64_checks.py calibration CACHE_FOLDER
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

#: The arithmetic of a measurement: the same on every machine, emulated or not.
FLOPS_AND_BYTES = (
    "fwd_flops",
    "bwd_flops",
    "optim_flops",
    "train_flops",
    "act_mem_bytes",
    "param_bytes",
    "grad_bytes",
    "optim_state_bytes",
)
KEY = ("model", "batch", "seconds", "precision")
#: A summary's FLOPs may differ by this fraction (the issue's tolerance; today they are equal).
FLOPS_TOLERANCE = 1e-4


def _note(line: str) -> None:
    print(line)
    if os.environ.get("W2VPROF_CHECKS"):
        with open(os.environ["W2VPROF_CHECKS"], "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def check_doctor(path: Path, pi_look: bool) -> list[str]:
    report = json.loads(path.read_text(encoding="utf-8"))
    machine = report["machine"]
    problems = []
    if machine.get("machine") != "aarch64":
        problems.append(f"machine is {machine.get('machine')!r}, not aarch64")
    expected = "raspberrypi" if pi_look else "linux"
    if machine.get("platform") != expected:
        problems.append(f"platform {machine.get('platform')!r} does not agree with machine aarch64 ({expected})")
    if pi_look and not str(machine.get("board", "")).startswith("Raspberry Pi 4"):
        problems.append(f"board is {machine.get('board')!r}, not the Raspberry Pi 4 mounted in")
    if pi_look and not str(machine.get("cpu", "")).startswith("Broadcom BCM2711, 4x Cortex-A72"):
        problems.append(f"cpu is {machine.get('cpu')!r}, not the Pi 4's")
    if not pi_look and "emulation?" not in str(machine.get("cpu", "")):
        problems.append(f"cpu is {machine.get('cpu')!r}: the x86 host's /proc/cpuinfo taken for this aarch64 CPU's")
    failed = [
        f"{section}/{check['name']}: {check['detail']}"
        for section, checks in report.items()
        if isinstance(checks, list)
        for check in checks
        if check.get("status") == "failed"
    ]
    problems += [f"doctor check failed: {line}" for line in failed]
    shown = ", ".join(f"{k} {machine.get(k)!r}" for k in ("machine", "platform", "board", "device", "cpu"))
    _note(f"doctor: {shown}")
    return problems


def check_summary(path: Path, x86_path: Path) -> list[str]:
    ours = {row["module"]: row for row in _read_csv(path)}
    theirs = {row["module"]: row for row in _read_csv(x86_path)}
    problems = [] if set(ours) == set(theirs) else [f"modules {sorted(ours)} != x86's {sorted(theirs)}"]
    worst = 0.0
    for module in sorted(set(ours) & set(theirs)):
        if ours[module]["params"] != theirs[module]["params"]:
            problems.append(f"{module}: params {ours[module]['params']} != x86's {theirs[module]['params']}")
        flops, x86_flops = int(ours[module]["inference_flops"]), int(theirs[module]["inference_flops"])
        off = abs(flops - x86_flops) / x86_flops if x86_flops else float(flops != 0)
        worst = max(worst, off)
        if off > FLOPS_TOLERANCE:
            problems.append(f"{module}: inference FLOPs {flops} vs x86's {x86_flops} ({off:.4%})")
    total = ours.get("total", {}).get("params", "?")
    _note(
        f"summary base: {len(ours)} modules, params equal to x86's: {not any('params' in p for p in problems)}, "
        f"largest FLOP difference {worst:.4%} (tolerance {FLOPS_TOLERANCE:.2%}); total params {total}, "
        f"inference FLOPs {ours.get('total', {}).get('inference_flops', '?')}",
    )
    return problems


def check_rows(path: Path, x86_path: Path, golden_path: Path) -> list[str]:
    rows = _read_csv(path)
    reference = {tuple(row[k] for k in KEY): row for row in _read_csv(x86_path)}
    golden = json.loads(golden_path.read_text(encoding="utf-8"))["values"]
    golden_key = tuple(golden[k] for k in KEY)
    problems = [] if rows else [f"{path}: no rows"]
    for row in rows:
        key = tuple(row[k] for k in KEY)
        name = "/".join(key)
        if row["status"] != "ok":
            problems.append(f"{name}: status {row['status']} ({row.get('error', '')})")
        others = [("x86", reference.get(key))] + ([("golden", golden)] if key == golden_key else [])
        if others[0][1] is None:
            problems.append(f"{name}: no x86 row to compare with in {x86_path}")
        for label, other in others:
            if other is None:
                continue
            differ = [f"{c} {row[c]} vs {other[c]}" for c in FLOPS_AND_BYTES if row[c] != other[c]]
            problems += [f"{name}: {label}: {d}" for d in differ]
        _note(
            f"{path.parent.name} {name}: {row['status']}, train FLOPs {row['train_flops']}, activations "
            f"{row['act_mem_bytes']} B, {row['sec_per_batch_median']} s/batch (emulated: means nothing), "
            f"FLOPs and bytes equal to {' and '.join(label for label, other in others if other)}: "
            f"{not any(p.startswith(name + ':') for p in problems)}",
        )
    return problems


def check_calibration(folder: Path) -> list[str]:
    files = sorted(folder.glob("calibration-*.json"))
    if not files:
        return [f"no calibration in {folder}: the sweep did not calibrate"]
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        line = (
            f"calibration: fp32 {data['peak_flops_fp32_measured'] / 1e9:.3f} GFLOP/s at {data['matmul_size_fp32']}^2, "
            f"{data['mixed_dtype']} {(data['peak_flops_mixed_measured'] or 0) / 1e9:.3f} GFLOP/s at "
            f"{data['matmul_size_mixed']}^2, copy {data['mem_bw_measured'] / 1e9:.2f} GB/s "
            f"({data['copy_bytes'] >> 20} MiB); note: {data.get('note') or '-'}"
        )
        _note(line)
    return []


def main(argv: list[str]) -> int:
    what, args = argv[0], argv[1:]
    if what == "doctor":
        problems = check_doctor(Path(args[0]), args[1] == "1")
    elif what == "summary":
        problems = check_summary(Path(args[0]), Path(args[1]))
    elif what == "rows":
        problems = check_rows(Path(args[0]), Path(args[1]), Path(args[2]))
    elif what == "calibration":
        problems = check_calibration(Path(args[0]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for problem in problems:
        print(f"DIFFERENCE: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
