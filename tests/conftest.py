"""Shared test helpers: the CLI run in this process or as a real subprocess, the session's thread count and fake
calibration cache, and the tiny model's training step, batches and profiles.

Two loops (the marker is registered in pyproject.toml; each test file marks its integration tests itself, with
`pytestmark = pytest.mark.integration` or `@pytest.mark.integration` on a test):
    python -m pytest -q -m "not integration"   # the unit loop: no training, no sweep children, servers or Flower
    python -m pytest -q                        # everything
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from w2vprof.measure.engine import ProfileConfig, ProfileResult
    from w2vprof.measure.step import TrainingStep
    from w2vprof.records import ResultRecord
    from w2vprof.sweep.runner import SweepOptions
    from w2vprof.workload.base import Batch


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    """Tests share a 2-core machine: keep torch from oversubscribing it. Under pytest-xdist each worker gets its
    share of the cores, so two workers on two cores do not fight over them."""
    import os

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    try:
        import torch

        torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // workers)))
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture(params=[True, False], ids=["cpu-bf16-native", "cpu-bf16-emulated"])
def cpu_native_bf16(request, monkeypatch) -> bool:
    """The host CPU's bfloat16 flags faked both ways (AVX512-BF16 present, or a CPU like a Raspberry Pi's without
    it), through the real /proc/cpuinfo parser: a test that takes this fixture runs twice and cannot pass or fail
    because of the CPU it runs on. The value is whether the faked CPU has native bfloat16."""
    import w2vprof.devices.cpu as cpu

    flags = "fpu sse2 avx2 avx512f" + (" avx512_bf16" if request.param else "")
    cpuinfo = f"processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: {flags}\n"
    monkeypatch.setattr(cpu, "read_native_bf16", lambda root="/", machine=None: cpu.has_native_bf16(cpuinfo))
    native: bool = request.param
    return native


@dataclass(frozen=True)
class CliResult:
    """What a user sees of one `w2vprof` run: the exit status and everything written to stdout and stderr."""

    returncode: int
    stdout: str
    stderr: str


def run_cli_in_process(*args: str) -> CliResult:
    """`w2vprof ARGS` through the console-script entry (w2vprof.cli.main.run) in this process.

    The same error mapping and exit status as the installed command, without a subprocess's interpreter start and
    torch import (about 2 s of CPU each). Python warnings are shown as a plain run shows them (Python's default
    filters) and land in stderr, so a "one line on stderr" assertion still sees a stray warning.
    """
    from w2vprof.cli.main import run

    stdout, stderr = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        _python_default_warning_filters()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                run(list(args))
            except SystemExit as stop:
                returncode = _exit_status(stop.code, stderr)
            else:  # pragma: no cover - run() always ends in sys.exit
                raise AssertionError("w2vprof.cli.main.run returned instead of exiting")
    shown = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line) for w in caught)
    return CliResult(returncode, stdout.getvalue(), stderr.getvalue() + shown)


def _python_default_warning_filters() -> None:
    """The filters a plain `python` starts with (pytest's own differ): deprecations and the like stay hidden."""
    warnings.resetwarnings()
    warnings.simplefilter("default")
    for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter("ignore", hidden)


def _exit_status(code: object, stderr: io.StringIO) -> int:
    """The status a process would end with for `sys.exit(code)`: None is 0, a message is printed and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=stderr)
    return 1


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `w2vprof ARGS` as a real subprocess (exit status and stderr as a user sees them).

    Slow (a fresh interpreter, often a torch import): kept for what only a process shows - the exit code the
    shell gets, what `--help` imports, a signal. Everything else uses run_cli_in_process.
    """
    return subprocess.run(
        [sys.executable, "-m", "w2vprof.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


#: The ceilings of the fake calibration every test finds in its cache (so no test measures this machine's).
FAKE_PEAK_FLOPS_FP32 = 123e9
FAKE_PEAK_FLOPS_MIXED = 234e9
FAKE_MEM_BW = 12.5e9


@pytest.fixture(autouse=True, scope="session")
def _fake_calibration_cache(_few_threads, tmp_path_factory):
    """A cache folder of the session's own (XDG_CACHE_HOME, inherited by the CLI subprocesses) holding a fake
    calibration of this CPU at the tests' thread count: a sweep finds it and measures nothing, and no test reads
    or writes the user's ~/.cache."""
    import os

    import torch

    from w2vprof.devices import identify
    from w2vprof.devices.calibrate import Calibration, cache_path, mixed_dtype_name

    folder = tmp_path_factory.mktemp("xdg-cache")
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    identity = identify("cpu")
    fake = Calibration(
        device="cpu",
        device_fingerprint=str(identity["device_fingerprint"]),
        device_name="fake",
        threads=torch.get_num_threads(),
        peak_flops_fp32_measured=FAKE_PEAK_FLOPS_FP32,
        peak_flops_mixed_measured=FAKE_PEAK_FLOPS_MIXED,
        mixed_dtype=mixed_dtype_name("cpu"),
        mem_bw_measured=FAKE_MEM_BW,
        matmul_size_fp32=2048,
        matmul_size_mixed=2048,
        copy_bytes=2**28,
        repeats=5,
        peak_flops_fp32_vendor=None,
        peak_flops_mixed_vendor=None,
        vendor_profile="",
        torch_version=torch.__version__,
        measured_at="2026-01-01T00:00:00+00:00",
        note="fake (tests/conftest.py)",
    )
    # one per thread count a test may run at: this process's (one under pytest-xdist), a child's default, --threads 2
    for threads in {torch.get_num_threads(), os.cpu_count() or 1, 1, 2}:
        path = cache_path(fake.device_fingerprint, threads)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(replace(fake, threads=threads).to_json(), encoding="utf-8")
    yield fake
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


# -- the unit loop trains nothing ---------------------------------------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """A test without the integration mark fails if it, or a fixture it is first to need, runs a training step:
    the unit loop stays fast, and a forgotten mark is a failure naming the mark, not a slow loop."""
    if item.get_closest_marker("integration") is not None:
        yield
        return
    from w2vprof.measure.step import TrainingStep

    def refuse(step: TrainingStep, batch: Batch) -> None:
        pytest.fail(
            f"{item.nodeid} trains a model in the unit loop: mark it integration "
            "(`pytestmark = pytest.mark.integration` in its file, or `@pytest.mark.integration` on the test)",
            pytrace=False,
        )

    train = TrainingStep.__call__
    TrainingStep.__call__ = refuse
    try:
        yield
    finally:
        TrainingStep.__call__ = train


# -- a sweep without child processes: what run_sweep(plan, QuietProgress(), measure=...) is given ----------------
class QuietProgress:
    """A sweep's progress reporter that prints nothing."""

    def started(self, total, to_run):
        pass

    def running(self, index, config, eta_s):
        pass

    def finished(self, index, record, wall_s):
        pass


def fake_sweep_record(config: ProfileConfig, options: SweepOptions, status: str = "ok") -> ResultRecord:
    """The row a measurement of `config` would write, without measuring (0.01 s per batch when `ok`)."""
    from w2vprof.records import ResultRecord

    return ResultRecord(
        model=config.model,
        batch=config.batch,
        seconds=config.seconds,
        precision=config.precision,
        device=config.device,
        status=status,
        repeats=config.repeats,
        objective=config.objective,
        device_fingerprint=options.device_identity.get("device_fingerprint", ""),
        sec_per_batch_median=0.01 if status == "ok" else None,
    )


# -- the tiny model, shared: one fixture per meaning ----------------------------------------------------------------
# A test that uses one which trains is an integration test (the guard above fails it otherwise).
def new_tiny_training_step(precision: str = "fp32") -> TrainingStep:
    """A fresh training step of the tiny model on the CPU, its weights seeded 0."""
    import torch

    from w2vprof.measure.step import TrainingStep
    from w2vprof.models import build_model

    torch.manual_seed(0)
    return TrainingStep.create(build_model("tiny").train(), "cpu", precision)


@pytest.fixture
def tiny_training_step() -> TrainingStep:
    """A fresh fp32 training step of the tiny model on the CPU (weights seeded 0), the test's own to slow down,
    hook or train."""
    return new_tiny_training_step()


@pytest.fixture
def two_tiny_batches() -> list[Batch]:
    """The first two batches of the synthetic workload, 2 utterances of 0.5 s each (seed 0)."""
    from w2vprof.workload import make_workload

    stream = make_workload(0.5).batches(2, 0)
    return [next(stream), next(stream)]


@pytest.fixture(scope="session")
def tiny_profile_result() -> ProfileResult:
    """The engine's in-process profile of the tiny model: batch 2, 1 s, 2 repeats, CPU, no telemetry (the
    configuration of the golden numbers). Read-only: measured once per session."""
    from w2vprof.measure.engine import ProfileConfig, profile_configuration

    config = ProfileConfig(model="tiny", batch=2, seconds=1.0, repeats=2, device="cpu", telemetry=False)
    return profile_configuration(config)


@pytest.fixture(scope="session")
def tiny_profile_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`w2vprof profile --model tiny --batch 2 --seconds 1 --repeats 3` as a real subprocess: its output folder
    (results.csv, layers.csv, run.json) and the finished process. Read-only: run once per session."""
    out = tmp_path_factory.mktemp("profile") / "run"
    result = run_cli(
        "profile", "--model", "tiny", "--batch", "2", "--seconds", "1", "--repeats", "3", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    return out, result
