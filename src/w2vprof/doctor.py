"""`w2vprof doctor`: what works on this machine, gathered as data (the CLI prints it as text or JSON).

Versions, the machine, whether this torch/torchaudio pair can build wav2vec 2.0, which devices and precisions can
train (each tried for real: one small training step), whether peak memory can be read the way a profile reads it,
which telemetry sources work, and one tiny-model training step with its time.

Every probe is isolated: one that raises is reported as `failed` with its one-line reason, and the others still
run. Statuses: `ok` (works), `no` (does not work here, and the detail says why), `failed` (the probe itself
raised: a w2vprof or install problem worth reporting).
"""

from __future__ import annotations

import functools
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from w2vprof import __version__
from w2vprof.compat import (
    installed_version,
    model_support_problem,
    one_line,
    training_problem,
)

__all__ = ["SECTIONS", "STEP_BATCH", "STEP_MODEL", "STEP_SECONDS", "Check", "DoctorReport", "diagnose"]

#: The training step the doctor times: the smallest model on one short utterance, on the CPU.
STEP_MODEL, STEP_BATCH, STEP_SECONDS = "tiny", 1, 1.0
DEVICE_KINDS = ("cpu", "cuda", "mps")
#: Distributions whose versions a bug report needs (flwr only with the fl extra).
DISTRIBUTIONS = (
    "torch",
    "torchaudio",
    "numpy",
    "typer",
    "rich",
    "pandas",
    "psutil",
    "soundfile",
    "nvidia-ml-py",
    "flwr",
)


@dataclass
class Check:
    name: str
    status: str  # ok | no | failed
    detail: str
    seconds: float | None = None  # the training step's time


@dataclass
class DoctorReport:
    versions: dict[str, str]
    machine: dict[str, str]
    sections: dict[str, list[Check]]
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "versions": self.versions,
            "machine": self.machine,
            **{name: [asdict(check) for check in checks] for name, checks in self.sections.items()},
            "elapsed_s": round(self.elapsed_s, 2),
        }


def guarded(name: str, probe: Callable[[], tuple[str, str]]) -> Check:
    """Run one probe returning (status, detail); an exception becomes a `failed` check, never a traceback."""
    try:
        status, detail = probe()
    except Exception as exc:  # noqa: BLE001 - isolation is the point: report it and carry on
        return Check(name, "failed", one_line(exc))
    return Check(name, status, detail)


def versions() -> dict[str, str]:
    """Versions from the installed metadata (no imports: a broken torchaudio still gets its version shown)."""
    found = {"w2vprof": __version__, "python": f"{platform.python_version()} ({platform.python_implementation()})"}
    for name in DISTRIBUTIONS:
        found[name] = installed_version(name) or "not installed"
    return found


def machine() -> dict[str, str]:
    """The OS and hardware as Python and w2vprof's device detection see them."""
    uname = platform.uname()
    found = {"system": uname.system, "release": uname.release, "kernel": uname.version, "machine": uname.machine}
    try:
        from w2vprof.devices import identify

        identity = identify("cpu")
        found.update(
            platform=identity["platform"],
            device=identity["device_name"],
            board=identity["board"],
            cpu=f"{identity['cpu_model']}, {identity['cpu_cores']} cores",
            memory=f"{identity['total_mem_bytes'] / 2**30:.1f} GiB",
        )
    except Exception as exc:  # noqa: BLE001 - a failing check is reported with its reason; the doctor goes on
        found["identify"] = f"failed: {one_line(exc)}"
    return found


# -- install --------------------------------------------------------------------------------------------------
def _model_support() -> tuple[str, str]:
    problem = model_support_problem()
    return ("no", problem) if problem else ("ok", "this torch/torchaudio pair can build wav2vec 2.0")


def _torch_build() -> tuple[str, str]:
    import torch

    cuda = torch.version.cuda or "none (CPU or other build)"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return "ok", f"torch {torch.__version__}, CUDA {cuda}, cuDNN {cudnn or 'none'}, {torch.get_num_threads()} threads"


def install_checks() -> list[Check]:
    return [guarded("model_support", _model_support), guarded("torch_build", _torch_build)]


# -- devices and precisions -----------------------------------------------------------------------------------
def _device_available(kind: str) -> tuple[bool, str]:
    """(usable, what it is or why not) for cpu | cuda | mps: available, and one small training step works."""
    import torch

    if kind == "cuda":
        if not torch.cuda.is_available():
            why = "this torch has no CUDA" if torch.version.cuda is None else "no CUDA device visible (driver?)"
            return False, why
        major, minor = torch.cuda.get_device_capability(0)
        props = torch.cuda.get_device_properties(0)
        what = f"{props.name}, capability {major}.{minor}, {props.total_memory / 2**30:.1f} GiB"
    elif kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            built = mps is not None and mps.is_built()
            return False, "MPS is built but not available (macOS 12.3+ on Apple silicon)" if built else "no MPS here"
        what = "Apple GPU (MPS)"
    else:
        what = f"{platform.machine()}, {torch.get_num_threads()} threads"
    problem = training_problem(kind)
    return (False, f"{what}: a training step fails: {problem}") if problem else (True, what)


def device_checks() -> tuple[list[Check], list[str]]:
    """One check per device kind, and the kinds that can train here."""
    checks, usable = [], []
    for kind in DEVICE_KINDS:
        try:
            works, detail = _device_available(kind)
        except Exception as exc:  # noqa: BLE001 - isolation: report it and try the next device
            checks.append(Check(kind, "failed", one_line(exc)))
            continue
        checks.append(Check(kind, "ok" if works else "no", detail))
        if works:
            usable.append(kind)
    return checks, usable


def _precision(kind: str, precision: str) -> tuple[str, str]:
    from w2vprof.measure.step import autocast_dtype, emulated_precision_note, uses_grad_scaler

    if precision == "fp32":
        problem = training_problem(kind)
        return ("no", problem) if problem else ("ok", "float32 forward, backward, AdamW step")
    dtype = autocast_dtype(kind)
    scaled = uses_grad_scaler(kind)  # as the engine's TrainingStep does
    problem = training_problem(kind, autocast_dtype=dtype, scaled=scaled)
    label = str(dtype).replace("torch.", "")
    if problem:
        return "no", f"{label}: {problem}"
    detail = f"autocast {label}" + (" with a gradient scaler" if scaled else "") + ", backward, AdamW step"
    if kind == "cpu":
        from w2vprof.devices.cpu import read_native_bf16

        if emulated_precision_note(kind, read_native_bf16()):
            detail += " (no native bfloat16 on this CPU: emulated, often slower than fp32)"
    return "ok", detail


def precision_checks(usable: list[str]) -> list[Check]:
    from w2vprof.records import PRECISIONS

    return [
        guarded(f"{kind} {precision}", functools.partial(_precision, kind, precision))
        for kind in usable
        for precision in PRECISIONS
    ]


# -- peak memory and telemetry --------------------------------------------------------------------------------
def _peak_memory(kind: str) -> tuple[str, str]:
    """Read the peak exactly as a profile does (reset, work, sample, read), around one small training step."""
    from w2vprof.measure.memory import StepPeakMemory

    peak = StepPeakMemory(kind)
    peak.reset()
    problem = training_problem(kind)
    peak.sample()
    reading = peak.read()
    if problem:
        return "no", f"the step to measure failed: {problem}"
    if not reading.peak_bytes:
        return "no", f"{reading.source or 'no source'}: read nothing"
    since_start = reading.source.endswith("since_process_start")
    note = " (cannot reset: the peak counts from process start)" if since_start else ""
    return "ok", f"{reading.source}: {reading.peak_bytes / 2**20:.1f} MiB{note}"


def peak_memory_checks(usable: list[str]) -> list[Check]:
    return [guarded(kind, functools.partial(_peak_memory, kind)) for kind in usable]


def telemetry_checks(device: str) -> list[Check]:
    """The telemetry sources `w2vprof devices` lists, for the device a profile would use by default."""
    from w2vprof.devices import available_sources

    try:
        rows = available_sources(device)
    except Exception as exc:  # noqa: BLE001 - a failing check is reported with its reason; the doctor goes on
        return [Check("sources", "failed", one_line(exc))]
    return [Check(source, "ok" if available else "no", details) for source, available, details in rows]


# -- one training step ----------------------------------------------------------------------------------------
def _training_step() -> tuple[float, str]:
    """Seconds of one tiny-model training step on the CPU (the engine's TrainingStep; timed after one warm-up)."""
    import torch

    from w2vprof.measure.step import TrainingStep
    from w2vprof.models import build_model
    from w2vprof.workload import make_workload

    torch.manual_seed(0)
    batch = next(make_workload(STEP_SECONDS).batches(STEP_BATCH, 0))
    step = TrainingStep.create(build_model(STEP_MODEL).train(), "cpu", "fp32")
    step(batch)  # warm-up: first-call allocations and AdamW's state
    start = time.perf_counter()
    output = step(batch)
    seconds = time.perf_counter() - start
    loss = float(output.loss.detach())
    if not math.isfinite(loss):
        raise RuntimeError(f"the loss is {loss}")
    return seconds, f"loss {loss:.3f}"


def step_checks() -> list[Check]:
    name = f"{STEP_MODEL}, batch {STEP_BATCH}, {STEP_SECONDS:g} s, cpu fp32"
    try:
        seconds, detail = _training_step()
    except Exception as exc:  # noqa: BLE001 - a failing check is reported with its reason; the doctor goes on
        return [Check(name, "failed", one_line(exc))]
    return [Check(name, "ok", f"{seconds:.3f} s per step, {detail}", seconds=round(seconds, 4))]


# -- all of it ------------------------------------------------------------------------------------------------
#: Section names in the order they are shown (JSON keys too).
SECTIONS = ("install", "devices", "precisions", "peak_memory", "telemetry", "training_step")


def _section(name: str, gather: Callable[[], list[Check]]) -> list[Check]:
    try:
        return gather()
    except Exception as exc:  # noqa: BLE001 - a section whose gathering raised is one failed check
        return [Check(name, "failed", one_line(exc))]


def diagnose() -> DoctorReport:
    """Run every probe (about 10 s on a small CPU; most of it importing torch and the training step)."""
    started = time.perf_counter()
    usable: list[str] = []  # device kinds that can train: filled by the devices section, used by the next ones

    def devices() -> list[Check]:
        found, kinds = device_checks()
        usable.extend(kinds)
        return found

    sections = {"install": _section("install", install_checks), "devices": _section("devices", devices)}
    sections["precisions"] = _section("precisions", lambda: precision_checks(usable))
    sections["peak_memory"] = _section("peak_memory", lambda: peak_memory_checks(usable))
    default_device = next((kind for kind in ("cuda", "mps") if kind in usable), "cpu")
    sections["telemetry"] = _section("telemetry", lambda: telemetry_checks(default_device))
    sections["training_step"] = _section("training_step", step_checks)
    return DoctorReport(versions(), machine(), sections, time.perf_counter() - started)
