"""The first sweep after an install (issue 23): its one cost a second sweep does not pay is the calibration, which
is a named progress step and runs in a process from the sweep's fork server (no interpreter start, no torch
import of its own).

Clocks are fake and the calibration process is a fake one (its exit code and files set by the test), except in the
one integration test, which forks a real, shrunken calibration from the fork server.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import pytest

import w2vprof.devices.calibrate as calibrate_module
from w2vprof.devices.calibrate import Calibration, cache_path
from w2vprof.sweep.calibration import (
    calibrating_message,
    ensure_calibration,
    measure_in_child,
    write_calibration,
)

IDENTITY = {"device_fingerprint": "0123abcd", "device_name": "Test box", "memory_ceiling_bytes": 64 * 2**30}


@pytest.fixture
def measured(_fake_calibration_cache: Calibration) -> Calibration:
    return replace(_fake_calibration_cache, note="", device_fingerprint=IDENTITY["device_fingerprint"])


class Clock:
    """Returns the given times, one per call."""

    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0)


def test_the_first_sweep_names_its_calibration_step_and_how_long_it_took(tmp_path, monkeypatch, measured):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty cache: a first sweep
    monkeypatch.setattr(calibrate_module, "TOTAL_BUDGET_SEC", 7.0)  # the step quotes the calibration's budget
    steps: list[str] = []
    events: list[str] = []

    def fake_measure(*args: Any) -> Any:
        events.append("measured")
        return measured, "measured"

    def announce(text: str) -> None:
        steps.append(text)
        events.append("announced")

    calibration, what = ensure_calibration(
        "cpu", threads=2, identity=IDENTITY, measure=fake_measure, announce=announce, clock=Clock(10.0, 22.5)
    )
    path = cache_path("0123abcd", 2, tmp_path / "w2vprof")
    assert calibration == measured and events == ["announced", "measured"]  # said before, not after
    assert steps == [calibrating_message(path, 7.0)]
    assert steps[0].startswith("calibrating this machine: up to 7 s, once (") and str(path) in steps[0]
    assert what == f"measured in 12.5 s, once: cached in {path}"


def test_a_calibration_the_children_cannot_read_says_so(tmp_path, monkeypatch, measured):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    uncached = replace(measured, note="not cached (/ro: Read-only file system)")
    _, what = ensure_calibration("cpu", 2, IDENTITY, measure=lambda *a: (uncached, "measured"), clock=Clock(0, 3))
    assert what == "measured in 3.0 s, but the configurations cannot read it (not cached (/ro: Read-only file system))"


class FakeProcess:
    """A calibration process that 'writes' what the test says when started and ends as the test says."""

    def __init__(self, script: dict[str, Any], args: tuple[Any, ...]) -> None:
        self.script, self.args, self.killed = script, args, False
        self.exitcode: Optional[int] = None
        script["process"] = self

    def start(self) -> None:
        if isinstance(self.script.get("start"), BaseException):
            raise self.script["start"]
        stderr_path, result_path = self.args[0], self.args[5]
        if "result" in self.script:
            Path(result_path).write_text(self.script["result"], encoding="utf-8")
        Path(stderr_path).write_text(self.script.get("stderr", ""), encoding="utf-8")

    def join(self, timeout: Optional[float] = None) -> None:
        if self.killed:
            self.exitcode = -9
        elif isinstance(self.script.get("join"), BaseException):
            raise self.script["join"]
        else:
            self.exitcode = self.script.get("exitcode")

    def kill(self) -> None:
        self.killed = True


class FakeContext:
    def __init__(self, **script: Any) -> None:
        self.script = script

    def Process(self, target: Any, args: tuple[Any, ...], kwargs: Any, daemon: bool) -> FakeProcess:
        return FakeProcess(self.script, args)


def _measure(tmp_path: Path, **script: Any) -> tuple[Any, str, FakeContext]:
    context = FakeContext(**script)
    calibration, what = measure_in_child("cpu", 2, IDENTITY, tmp_path, context=context, timeout_s=5)
    return calibration, what, context


def test_the_calibration_process_s_result_is_read_back(tmp_path, measured):
    calibration, what, context = _measure(tmp_path, result=measured.to_json(), exitcode=0)
    assert (calibration, what) == (measured, "measured")
    assert context.script["process"].args[1:5] == ("cpu", 2, IDENTITY, tmp_path)


@pytest.mark.parametrize(
    ("script", "why"),
    [
        (
            {"stderr": "Traceback (most recent call last):\n  ...\nRuntimeError: no bfloat16 here\n", "exitcode": 1},
            "calibration failed: RuntimeError: no bfloat16 here",
        ),
        ({"exitcode": 3}, "calibration failed: exit status 3"),
        ({"exitcode": -9}, "calibration failed: ended by signal 9"),
        ({"result": "{not json", "exitcode": 0}, "calibration wrote no calibration: "),
        ({"exitcode": 0}, "calibration wrote no calibration: "),
        ({"start": OSError("no more processes")}, "calibration did not run: no more processes"),
    ],
)
def test_a_failed_calibration_process_is_one_line(tmp_path, script, why):
    calibration, what, _ = _measure(tmp_path, **script)
    assert calibration is None and what.startswith(why) and "\n" not in what


def test_a_calibration_over_its_time_limit_is_killed(tmp_path):
    calibration, what, context = _measure(tmp_path, exitcode=None)
    assert calibration is None and what == "calibration did not finish within 5 s"
    assert context.script["process"].killed


def test_an_interrupted_sweep_kills_its_calibration(tmp_path):
    context = FakeContext(join=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        measure_in_child("cpu", 2, IDENTITY, tmp_path, context=context)
    assert context.script["process"].killed  # Ctrl-C never leaves a calibration measuring behind the sweep


def test_write_calibration_measures_at_the_asked_threads_into_the_asked_folder(tmp_path, monkeypatch):
    import torch

    from test_calibrate import FakeClock, FakeOps

    real = calibrate_module.calibrate
    threads_seen: list[int] = []

    def fake(device: str, dtype_mixed: Any = None, **options: Any) -> Calibration:
        threads_seen.append(torch.get_num_threads())
        clock = FakeClock()
        ops = FakeOps(clock, {"float32": 5e10, "bfloat16": 8e10}, 2e10)
        return real(device, dtype_mixed, ops=ops, clock=clock, identity=options["identity"])

    monkeypatch.setattr(calibrate_module, "calibrate", fake)
    previous = torch.get_num_threads()
    try:
        write_calibration("cpu", 1, IDENTITY, tmp_path, tmp_path / "out.json")
    finally:
        torch.set_num_threads(previous)
    written = Calibration.from_json((tmp_path / "out.json").read_text())
    assert threads_seen == [1] and written.threads == 1
    assert written.peak_flops_fp32_measured == pytest.approx(5e10)
    assert Calibration.from_json(cache_path("0123abcd", 1, tmp_path).read_text()) == written


@pytest.mark.integration  # a real (shrunken) calibration forked from the sweep's fork server
def test_a_real_calibration_comes_from_the_fork_server(tmp_path):
    """The real process (the fork server's where there is one), shrunken: one line for an error too."""
    from w2vprof.devices import identify

    identity = identify("cpu")
    calibration, what = measure_in_child("cpu", 1, identity, tmp_path, repeats=2, matmul_size=64)
    assert what == "measured", what
    assert calibration is not None and calibration.threads == 1 and calibration.peak_flops_fp32_measured > 0
    assert cache_path(str(identity["device_fingerprint"]), 1, tmp_path).is_file()
    assert os.listdir(tmp_path) == [cache_path(str(identity["device_fingerprint"]), 1, tmp_path).name]

    calibration, what = measure_in_child("cpu", 1, identity, tmp_path / "empty", no_such_option=1)
    assert calibration is None and what.startswith("calibration failed: TypeError: ") and "no_such_option" in what


def test_the_sweep_prints_the_step_unless_quiet(monkeypatch, capsys, measured):
    import w2vprof.sweep.calibration as sweep_calibration
    from w2vprof.cli.sweep import _calibrate

    def fake_ensure(device: str, threads: Any, identity: Any, announce: Any = None) -> Any:
        if announce is not None:
            announce("calibrating this machine: up to 12 s, once (...)")
        return measured, "measured in 11.0 s, once: cached in c.json"

    monkeypatch.setattr(sweep_calibration, "ensure_calibration", fake_ensure)
    plan = type("Plan", (), {"device": "cpu", "options": type("Options", (), {"device_identity": IDENTITY})})
    _calibrate(plan, None, quiet=False)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "calibrating this machine: up to 12 s, once (...)"
    assert lines[1].startswith("calibration (measured in 11.0 s, once: cached in c.json): fp32 matmul 123.0 GFLOP/s")
    _calibrate(plan, None, quiet=True)
    assert capsys.readouterr().err == ""
