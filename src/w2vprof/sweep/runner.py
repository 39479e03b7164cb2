"""Run a planned grid: one child process per configuration, watched for memory and time, each row saved as it ends.

Statuses the parent records: `oom` for a real OOM (an out-of-memory error inside the child, or the kernel's OOM
killer: SIGKILL we did not send) and for a child over the memory limit (the parent watches what can run out on
the device, see w2vprof.sweep.watch, and stops it); `timeout` past the time limit; `error` with the one line of
the child's error for anything else (w2vprof.measure.failures classifies both).

The results file stays locked by the plan for the whole run; each row is appended (one write + fsync) the
moment its configuration ends, and a re-run row (`retry`) replaces the old one in an atomic rewrite, so the file
holds each configuration once at every moment.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Protocol, Tuple

from w2vprof.measure.engine import ProfileConfig
from w2vprof.records import (
    DEFAULT_OBJECTIVE,
    DEFAULT_RECIPE,
    LAYER_COLUMNS,
    LAYER_RULES,
    LayerRecord,
    ResultRecord,
    length_key,
    objective_of,
    recipe_of,
    write_records_csv,
)
from w2vprof.sweep.plan import SweepOptions, SweepPlan

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.sweep.launch import ChildHandle, ChildLauncher
    from w2vprof.sweep.watch import MemoryWatcher

__all__ = [
    "SweepOptions",
    "SweepReporter",
    "ChildMeasurer",
    "Measure",
    "run_sweep",
    "config_label",
    "resume_key",
    "layers_folder",
]

POLL_S = 0.1

#: identify()'s platforms whose GPU allocates from the system's RAM.
UNIFIED_MEMORY_PLATFORMS = ("jetson", "apple")

Measure = Callable[[ProfileConfig, SweepOptions], "tuple[ResultRecord, list[LayerRecord]]"]


class SweepReporter(Protocol):
    def started(self, total: int, to_run: int) -> None: ...
    def running(self, index: int, config: ProfileConfig, eta_s: Optional[float]) -> None: ...
    def finished(self, index: int, record: ResultRecord, wall_s: float) -> None: ...


#: Identifies a configuration among a results file's rows: (model, batch, length key or None for audio, precision,
#: device, workload, device fingerprint, recipe, objective).
ResumeKey = Tuple[str, int, Optional[float], str, str, str, str, str, str]


def config_label(c: ProfileConfig) -> str:
    recipe = f" {c.recipe}" if c.recipe != DEFAULT_RECIPE else ""
    objective = f" {c.objective}" if c.objective != DEFAULT_OBJECTIVE else ""
    return f"{c.model}{objective} batch {c.batch} {c.seconds:g} s {c.precision}{recipe}"


def resume_key(
    model: str,
    batch: int,
    seconds: float,
    precision: str,
    device: str,
    workload: str,
    fingerprint: str,
    recipe: str = DEFAULT_RECIPE,
    objective: str = DEFAULT_OBJECTIVE,
) -> ResumeKey:
    # Audio workloads record the corpus's mean length as `seconds`: the requested value is not the identity.
    seconds_key = None if workload.startswith("audio:") else length_key(seconds)
    return (
        model,
        int(batch),
        seconds_key,
        precision,
        device,
        workload,
        fingerprint,
        recipe or DEFAULT_RECIPE,
        objective or DEFAULT_OBJECTIVE,
    )


def _record_key(r: ResultRecord) -> ResumeKey:
    return resume_key(
        r.model,
        r.batch,
        r.seconds,
        r.precision,
        r.device,
        r.workload,
        r.device_fingerprint,
        recipe_of(r),
        objective_of(r),
    )


def _config_key(c: ProfileConfig, fingerprint: str) -> ResumeKey:
    return resume_key(
        c.model,
        c.batch,
        c.seconds,
        c.precision,
        c.device,
        _workload_name(c),
        fingerprint,
        _recipe_text(c),
        c.objective,
    )


def _recipe_text(config: ProfileConfig) -> str:
    """The canonical text of the configuration's recipe (as its record will carry it)."""
    from w2vprof.measure.recipes import parse_recipe

    return parse_recipe(config.recipe).text


def _workload_name(config: ProfileConfig) -> str:
    """The name the record will carry (reads no audio), so resume matches finished rows."""
    from w2vprof.workload import workload_name

    return workload_name(config.audio, config.length_dist)


def layers_folder(out: Path) -> Path:
    return out.with_name(out.stem + ".layers")


def _slug(record: ResultRecord) -> str:
    text = f"{record.model}_b{record.batch}_s{record.seconds:g}_{record.precision}_{record.device}"
    if objective_of(record) != DEFAULT_OBJECTIVE:
        text += "_" + objective_of(record)
    if record.workload != "synthetic":
        text += "_" + record.workload
    if recipe_of(record) != DEFAULT_RECIPE:
        text += "_" + recipe_of(record)
    return "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in text)


def _empty_record(config: ProfileConfig, identity: Dict[str, Any], **fields: Any) -> ResultRecord:
    known = set(ResultRecord.__dataclass_fields__)
    record = ResultRecord(
        model=config.model,
        batch=config.batch,
        seconds=config.seconds,
        precision=config.precision,
        device=config.device,
        workload=_workload_name(config),
        repeats=config.repeats,
        warmup=config.warmup,
        seed=config.seed,
        objective=config.objective,
        **{k: v for k, v in identity.items() if k in known},
        **_recipe_fields(config),
    )
    return replace(record, **fields)


def _recipe_fields(config: ProfileConfig) -> Dict[str, Any]:
    from w2vprof.measure.recipes import parse_recipe

    return parse_recipe(config.recipe).record_fields()


@dataclass
class _Ending:
    """How a child ended, as seen by the parent."""

    exit_code: int
    stopped_for: Optional[str] = None  # "mem_limit" | "timeout" when the sweep stopped it
    peak_seen_bytes: int = 0


def _watch(child: ChildHandle, options: SweepOptions, watcher: MemoryWatcher) -> _Ending:
    """Wait for the child, stopping it over the memory or time limit; Ctrl-C (or any error) stops it too."""
    started = time.monotonic()
    peak = 0
    if options.mem_limit_bytes:
        watcher.start(child.pid)
    try:
        while True:
            code = child.wait(POLL_S)
            if code is not None:
                return _Ending(code, None, peak)
            if options.mem_limit_bytes:
                peak = max(peak, watcher.used_bytes(child.pid))
                if peak > options.mem_limit_bytes:
                    return _Ending(child.kill(), "mem_limit", peak)
            if options.timeout_s and time.monotonic() - started > options.timeout_s:
                return _Ending(child.kill(), "timeout", peak)
    except BaseException:
        child.kill()  # never leave a child training behind
        raise


def _stopped_record(
    config: ProfileConfig, options: SweepOptions, ending: _Ending, watcher: MemoryWatcher
) -> ResultRecord:
    identity = options.device_identity
    if ending.stopped_for == "timeout":
        return _empty_record(config, identity, status="timeout", error=f"over the time limit ({options.timeout_s:g} s)")
    limit = options.mem_limit_bytes or 0
    return _empty_record(
        config,
        identity,
        status="oom",
        mem_limit_bytes=limit,
        peak_mem_bytes=ending.peak_seen_bytes,
        peak_mem_source=watcher.source,
        error=f"stopped by the sweep: {watcher.what} {ending.peak_seen_bytes / 2**30:.2f} GiB over the memory "
        f"limit ({limit / 2**30:.2f} GiB)",
    )


def _child_record(
    config: ProfileConfig, options: SweepOptions, exit_code: int, result_path: str, stderr_path: str
) -> tuple[ResultRecord, list[LayerRecord]]:
    """The record of a child that ended by itself (or was killed by someone else than the sweep)."""
    from w2vprof.measure.failures import classify_error_text

    if exit_code == 0 and os.path.exists(result_path):
        with open(result_path, encoding="utf-8") as handle:
            payload = json.load(handle)
        record = replace(ResultRecord(**payload["record"]), mem_limit_bytes=options.mem_limit_bytes)
        return record, [LayerRecord(**layer) for layer in payload["layers"]]
    identity = options.device_identity
    if exit_code == -signal.SIGKILL:
        return _empty_record(
            config,
            identity,
            status="oom",
            error="killed by SIGKILL, not by the sweep: most likely the kernel's OOM killer",
        ), []
    status, line = classify_error_text(Path(stderr_path).read_text(errors="replace"))
    return _empty_record(config, identity, status=status, error=line or f"child exited with status {exit_code}"), []


class ChildMeasurer:
    """Measures each configuration in a process of its own (w2vprof.sweep.launch) and reads back its record."""

    def __init__(
        self,
        device: str = "cpu",
        platform: str = "",
        launcher: Optional[ChildLauncher] = None,
        watcher: Optional[MemoryWatcher] = None,
    ) -> None:
        from w2vprof.sweep.launch import ChildLauncher
        from w2vprof.sweep.watch import memory_watcher

        self.device = device
        self.launcher = launcher or ChildLauncher(unified_memory=platform in UNIFIED_MEMORY_PLATFORMS)
        self.watcher = watcher or memory_watcher(device, platform)

    def __call__(self, config: ProfileConfig, options: SweepOptions) -> tuple[ResultRecord, list[LayerRecord]]:
        watcher = self.watcher
        with tempfile.TemporaryDirectory(prefix="w2vprof-") as scratch:
            result_path = os.path.join(scratch, "result.json")
            stderr_path = os.path.join(scratch, "stderr.txt")
            child = self.launcher.start(config, result_path, stderr_path)
            ending = _watch(child, options, watcher)
            if ending.stopped_for:
                return _stopped_record(config, options, ending, watcher), []
            return _child_record(config, options, ending.exit_code, result_path, stderr_path)

    def close(self) -> None:
        self.launcher.close()


def _needs_at_least(config: ProfileConfig, oom: ResultRecord) -> bool:
    return (
        config.model == oom.model
        and config.precision == oom.precision
        and config.batch >= oom.batch
        and config.seconds >= oom.seconds
        and _recipe_text(config) == recipe_of(oom)  # another recipe may well fit where this one ran out
        and config.objective == objective_of(oom)  # CTC's model and step are another model's
    )


@dataclass
class _Work:
    """What this run does: the configurations to measure, and where a retried row sits in the file's rows."""

    pending: list[ProfileConfig]
    rows: list[ResultRecord]  # the file's rows, in order (retried ones replaced as they finish)
    replaces: dict[ResumeKey, int]  # key of a retried configuration -> its row's index in `rows`
    ooms: list[ResultRecord]  # rows whose OOM implies larger configurations run out too


def _plan_work(configs: list[ProfileConfig], existing: list[ResultRecord], options: SweepOptions) -> _Work:
    fingerprint = options.device_identity.get("device_fingerprint", "")
    index_of = {_record_key(r): i for i, r in enumerate(existing)}
    retried = {key: i for key, i in index_of.items() if existing[i].status in options.retry}
    keys = [_config_key(c, fingerprint) for c in configs]
    pending = [c for c, key in zip(configs, keys) if key not in index_of or key in retried]
    ooms = [
        r
        for i, r in enumerate(existing)
        if r.status == "oom"
        and not r.skipped_because
        and r.device_fingerprint == fingerprint
        and _record_key(r) not in retried
    ]
    return _Work(pending, list(existing), retried, ooms)


def _pruned_record(config: ProfileConfig, options: SweepOptions, cause: ResultRecord) -> ResultRecord:
    return _empty_record(
        config,
        options.device_identity,
        status="oom",
        skipped_because=f"{cause.model}"
        + (f" {objective_of(cause)}" if objective_of(cause) != DEFAULT_OBJECTIVE else "")
        + f" batch {cause.batch} {cause.seconds:g} s {cause.precision}"
        + (f" {recipe_of(cause)}" if recipe_of(cause) != DEFAULT_RECIPE else "")
        + " was oom",
        error="not run: needs at least as much memory as a configuration that ran out",
    )


def _save(
    plan: SweepPlan, work: _Work, config: ProfileConfig, record: ResultRecord, layers: list[LayerRecord]
) -> ResultRecord:
    """Write the configuration's layer rows, then its result row (appended, or in place of the row it retries)."""
    out = plan.options.out
    if layers:
        folder = layers_folder(out)
        folder.mkdir(exist_ok=True)
        layer_path = folder / f"{_slug(record)}.csv"
        write_records_csv(layer_path, layers, LAYER_COLUMNS, LAYER_RULES)
        record = replace(record, layers_file=str(layer_path.relative_to(out.parent)))
    index = work.replaces.get(_config_key(config, plan.options.device_identity.get("device_fingerprint", "")))
    if index is None:
        plan.writer.append(record)
        work.rows.append(record)
    else:
        work.rows[index] = record
        plan.writer.replace(work.rows)
    return record


def run_sweep(plan: SweepPlan, reporter: SweepReporter, measure: Optional[Measure] = None) -> list[ResultRecord]:
    """Measure every configuration of the plan not already in its file (and re-run its `retry` rows); returns
    the rows written by this run. `measure` stands in for the child processes in tests."""
    options = plan.options
    work = _plan_work(plan.configs, plan.existing, options)
    measurer: Optional[ChildMeasurer] = None
    if measure is None:
        measure = measurer = ChildMeasurer(plan.device, options.device_identity.get("platform", ""))
    reporter.started(len(plan.configs), len(work.pending))
    written: list[ResultRecord] = []
    eta = _Eta()
    try:
        for index, config in enumerate(work.pending):
            reporter.running(index, config, eta.remaining(work.pending[index:]))
            started = time.monotonic()
            cause = next((o for o in work.ooms if _needs_at_least(config, o)), None) if options.prune else None
            record, layers = (_pruned_record(config, options, cause), []) if cause else measure(config, options)
            record = _save(plan, work, config, record, layers)
            written.append(record)
            wall = time.monotonic() - started
            if record.status == "oom" and not record.skipped_because:
                work.ooms.append(record)
            if cause is None:
                eta.learn(config, record, wall)
            reporter.finished(index, record, wall)
    finally:
        if measurer is not None:
            measurer.close()
    return written


class _Eta:
    """Remaining wall time: per configuration a fixed overhead plus its steps, whose time scales with
    batch x seconds (as FLOPs do), learnt per model from the last finished configuration."""

    def __init__(self) -> None:
        self.step_seconds_per_unit: dict[str, float] = {}
        self.overheads: list[float] = []  # wall seconds of a configuration beyond its steps (start-up, ...)

    @staticmethod
    def _steps(config: ProfileConfig) -> int:
        return config.repeats + max(config.warmup, 1) + config.layer_repeats  # layer timing's steps run too

    def learn(self, config: ProfileConfig, record: ResultRecord, wall_s: float) -> None:
        if record.status != "ok" or not record.sec_per_batch_median:
            return
        self.step_seconds_per_unit[config.model] = record.sec_per_batch_median / (config.batch * config.seconds)
        self.overheads.append(max(wall_s - self._steps(config) * record.sec_per_batch_median, 0.0))

    def remaining(self, configs: list[ProfileConfig]) -> Optional[float]:
        if not self.step_seconds_per_unit:
            return None
        fallback = max(self.step_seconds_per_unit.values())
        overhead = sum(self.overheads) / len(self.overheads)
        return sum(
            overhead + self._steps(c) * c.batch * c.seconds * self.step_seconds_per_unit.get(c.model, fallback)
            for c in configs
        )
