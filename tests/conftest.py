"""Shared test helpers: the CLI run in this process or as a real subprocess, the unit/integration split, and the
session's thread count and fake calibration cache.

Two loops (markers registered in pyproject.toml):
    python -m pytest -q -m "not integration"   # the unit loop: no model training, no processes, no Flower
    python -m pytest -q                        # everything
"""
from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import warnings
from dataclasses import dataclass

import pytest


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    """Tests share a 2-core machine: keep torch from oversubscribing it."""
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:  # pragma: no cover
        pass


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
        device="cpu", device_fingerprint=str(identity["device_fingerprint"]), device_name="fake",
        threads=torch.get_num_threads(), peak_flops_fp32_measured=FAKE_PEAK_FLOPS_FP32,
        peak_flops_mixed_measured=FAKE_PEAK_FLOPS_MIXED, mixed_dtype=mixed_dtype_name("cpu"),
        mem_bw_measured=FAKE_MEM_BW, matmul_size_fp32=2048, matmul_size_mixed=2048, copy_bytes=2**28, repeats=5,
        peak_flops_fp32_vendor=None, peak_flops_mixed_vendor=None, vendor_profile="",
        torch_version=torch.__version__, measured_at="2026-01-01T00:00:00+00:00", note="fake (tests/conftest.py)",
    )
    path = cache_path(fake.device_fingerprint)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(fake.to_json(), encoding="utf-8")
    yield fake
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous
