"""Run a grid: one child process per configuration, watched for memory and time, each row saved as it ends.

Statuses the parent records: `oom` for a real OOM (CUDA OOM / MemoryError inside the child, or the kernel's
OOM killer: SIGKILL we did not send) and for a child over --mem-limit (the parent watches its resident memory
and stops it); `timeout` past --timeout; `error` with the last line of the child's error for anything else.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Protocol

from w2vprof.measure.engine import ProfileConfig
from w2vprof.records import LAYER_COLUMNS, LayerRecord, ResultRecord, write_records_csv
from w2vprof.sweep.writer import ResultsWriter

__all__ = ["SweepOptions", "SweepReporter", "run_sweep", "config_label", "resume_key", "layers_folder"]

POLL_S = 0.1


@dataclass
class SweepOptions:
    out: Path
    mem_limit_bytes: Optional[int] = None
    timeout_s: Optional[float] = None
    prune: bool = True
    device_identity: dict = field(default_factory=dict)  # identify(device): fingerprint & co. for skipped rows


class SweepReporter(Protocol):
    def started(self, total: int, to_run: int) -> None: ...
    def running(self, index: int, config: ProfileConfig, eta_s: Optional[float]) -> None: ...
    def finished(self, index: int, record: ResultRecord, wall_s: float) -> None: ...


def config_label(c: ProfileConfig) -> str:
    return f"{c.model} batch {c.batch} {c.seconds:g} s {c.precision}"


def resume_key(model: str, batch: int, seconds: float, precision: str, device: str, workload: str, fingerprint: str) -> tuple:
    # Audio workloads record the corpus's mean length as `seconds`: the requested value is not the identity.
    seconds_key = None if workload.startswith("audio:") else round(float(seconds), 6)
    return (model, int(batch), seconds_key, precision, device, workload, fingerprint)


def _workload_name(config: ProfileConfig) -> str:
    """The name the record will carry (reads no audio), so resume matches finished rows."""
    from w2vprof.workload import workload_name

    return workload_name(config.audio, config.length_dist)


def layers_folder(out: Path) -> Path:
    return out.with_name(out.stem + ".layers")


def _slug(record: ResultRecord) -> str:
    text = f"{record.model}_b{record.batch}_s{record.seconds:g}_{record.precision}_{record.device}"
    if record.workload != "synthetic":
        text += "_" + record.workload
    return "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in text)


def _empty_record(config: ProfileConfig, identity: dict, **fields) -> ResultRecord:
    known = set(ResultRecord.__dataclass_fields__)
    record = ResultRecord(
        model=config.model, batch=config.batch, seconds=config.seconds, precision=config.precision,
        device=config.device, workload=_workload_name(config), repeats=config.repeats, warmup=config.warmup,
        seed=config.seed, **{k: v for k, v in identity.items() if k in known},
    )
    return replace(record, **fields)


def _child_memory(process) -> int:
    """Resident memory of the child and its own children (bytes)."""
    import psutil

    try:
        parent = psutil.Process(process.pid)
        total = parent.memory_info().rss
        for child in parent.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total
    except psutil.Error:
        return 0


_CONTEXT = None


def _start_child(config: ProfileConfig, result_path: str, stderr_path: str):
    """Fork a child from the fork server (torch already imported there; started on first use)."""
    import multiprocessing

    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(["w2vprof.sweep.child"])
    from w2vprof.sweep.child import forked_entry

    process = _CONTEXT.Process(
        target=forked_entry, args=(config.to_json(), result_path, stderr_path, os.getpid()), daemon=True
    )
    process.start()
    return process


def _kill(process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.join()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def measure_in_child(config: ProfileConfig, options: SweepOptions) -> tuple[ResultRecord, list[LayerRecord]]:
    """Run one configuration in a fresh process and turn whatever happened into a record."""
    identity = options.device_identity
    with tempfile.TemporaryDirectory(prefix="w2vprof-") as scratch:
        result_path = os.path.join(scratch, "result.json")
        stderr_path = os.path.join(scratch, "stderr.txt")
        process = _start_child(config, result_path, stderr_path)
        started = time.monotonic()
        killed_for = None
        peak_seen = 0
        try:
            while process.exitcode is None:
                process.join(POLL_S)
                if process.exitcode is not None:
                    break
                if options.mem_limit_bytes:
                    peak_seen = max(peak_seen, _child_memory(process))
                    if peak_seen > options.mem_limit_bytes:
                        killed_for = "mem_limit"
                        _kill(process)
                        break
                if options.timeout_s and time.monotonic() - started > options.timeout_s:
                    killed_for = "timeout"
                    _kill(process)
                    break
        except BaseException:
            _kill(process)  # Ctrl-C or anything else: never leave a child training behind
            raise
        returncode = process.exitcode
        process.close()
        error_text = Path(stderr_path).read_text(errors="replace")
        if killed_for == "mem_limit":
            limit_gib = options.mem_limit_bytes / 2**30
            return _empty_record(
                config, identity, status="oom", mem_limit_bytes=options.mem_limit_bytes, peak_mem_bytes=peak_seen,
                peak_mem_source="rss_sampled_by_sweep",
                error=f"stopped by the sweep: resident memory {peak_seen / 2**30:.2f} GiB over --mem-limit {limit_gib:.2f} GiB",
            ), []
        if killed_for == "timeout":
            return _empty_record(config, identity, status="timeout", error=f"over --timeout {options.timeout_s:g} s"), []
        if returncode == 0 and os.path.exists(result_path):
            with open(result_path, encoding="utf-8") as handle:
                payload = json.load(handle)
            record = ResultRecord(**payload["record"])
            record.mem_limit_bytes = options.mem_limit_bytes
            layers = [LayerRecord(**layer) for layer in payload["layers"]]
            return record, layers
        if returncode == -signal.SIGKILL:
            return _empty_record(
                config, identity, status="oom",
                error="killed by SIGKILL, not by the sweep: most likely the kernel's OOM killer",
            ), []
        last = _last_line(error_text) or f"child exited with status {returncode}"
        status = "oom" if ("MemoryError" in last or "out of memory" in last.lower()) else "error"
        return _empty_record(config, identity, status=status, error=last), []


def _needs_at_least(config: ProfileConfig, oom: ResultRecord) -> bool:
    return (
        config.model == oom.model
        and config.precision == oom.precision
        and config.batch >= oom.batch
        and config.seconds >= oom.seconds
    )


def run_sweep(
    configs: list[ProfileConfig],
    options: SweepOptions,
    existing: list[ResultRecord],
    reporter: SweepReporter,
    measure: Callable[[ProfileConfig, SweepOptions], tuple[ResultRecord, list[LayerRecord]]] = measure_in_child,
) -> list[ResultRecord]:
    """Measure every configuration not already in `existing`; returns the rows written by this run."""
    fingerprint = options.device_identity.get("device_fingerprint", "")
    done = {
        resume_key(r.model, r.batch, r.seconds, r.precision, r.device, r.workload, r.device_fingerprint)
        for r in existing
    }
    ooms = [r for r in existing if r.status == "oom" and not r.skipped_because and r.device_fingerprint == fingerprint]
    pending = [
        c for c in configs
        if resume_key(c.model, c.batch, c.seconds, c.precision, c.device, _workload_name(c), fingerprint) not in done
    ]
    writer = ResultsWriter(options.out)
    reporter.started(len(configs), len(pending))
    written: list[ResultRecord] = []
    step_seconds_per_unit: dict[str, float] = {}  # seconds per step per (batch x seconds), learnt per model
    overheads: list[float] = []  # wall seconds of a configuration beyond its steps (start-up, build, ...)

    for index, config in enumerate(pending):
        eta = _eta(pending[index:], step_seconds_per_unit, overheads)
        reporter.running(index, config, eta)
        started = time.monotonic()
        cause = next((o for o in ooms if _needs_at_least(config, o)), None) if options.prune else None
        if cause is not None:
            record = _empty_record(
                config, options.device_identity, status="oom",
                skipped_because=f"{cause.model} batch {cause.batch} {cause.seconds:g} s {cause.precision} was oom",
                error="not run: needs at least as much memory as a configuration that ran out",
            )
            layers: list[LayerRecord] = []
        else:
            record, layers = measure(config, options)
        if layers:
            folder = layers_folder(options.out)
            folder.mkdir(exist_ok=True)
            layer_path = folder / f"{_slug(record)}.csv"
            write_records_csv(layer_path, layers, LAYER_COLUMNS)
            record.layers_file = str(layer_path.relative_to(options.out.parent))
        writer.append(record)
        written.append(record)
        wall = time.monotonic() - started
        if record.status == "oom" and not record.skipped_because:
            ooms.append(record)
        if cause is None and record.status == "ok" and record.sec_per_batch_median:
            steps = config.repeats + max(config.warmup, 1)
            step_seconds_per_unit[config.model] = record.sec_per_batch_median / (config.batch * config.seconds)
            overheads.append(max(wall - steps * record.sec_per_batch_median, 0.0))
        reporter.finished(index, record, wall)
    return written


def _eta(remaining: list[ProfileConfig], step_seconds_per_unit: dict[str, float], overheads: list[float]) -> Optional[float]:
    """Remaining wall time: per configuration a fixed overhead plus its steps, whose time scales with
    batch x seconds (as FLOPs do), learnt per model from the last finished configuration."""
    if not step_seconds_per_unit:
        return None
    fallback = max(step_seconds_per_unit.values())
    overhead = sum(overheads) / len(overheads)
    return sum(
        overhead
        + (c.repeats + max(c.warmup, 1)) * c.batch * c.seconds * step_seconds_per_unit.get(c.model, fallback)
        for c in remaining
    )
