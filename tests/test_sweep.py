"""The sweep survives kills and OOMs, resumes exactly, prunes, and rejects bad input before running."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_cli
from w2vprof.measure.engine import ProfileConfig
from w2vprof.records import ResultRecord, read_results_csv
from w2vprof.sweep.grid import GridSpec, expand
from w2vprof.sweep.runner import SweepOptions, run_sweep

TINY_GRID = ["--model", "tiny", "--seconds", "0.5,1,1.5,2", "--batch", "1,2", "--precision", "fp32", "--repeats", "1"]


def _rows(path: Path) -> list[ResultRecord]:
    return read_results_csv(path)


def _keys(rows):
    return sorted((r.model, r.batch, r.seconds, r.precision) for r in rows)


def test_sigkill_then_resume_runs_exactly_the_missing_configurations(tmp_path):
    out = tmp_path / "r.csv"
    process = subprocess.Popen(
        [sys.executable, "-m", "w2vprof.cli.main", "sweep", *TINY_GRID, "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if out.exists() and len(out.read_text().splitlines()) >= 3:  # header + two rows
                break
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    before = _rows(out)  # parses after kill -9
    assert 2 <= len(before) < 8
    result = run_cli("sweep", *TINY_GRID, "--out", str(out), "--resume")
    assert result.returncode == 0, result.stderr
    assert f"{8 - len(before)} configurations to run" in result.stderr
    after = _rows(out)
    assert len(after) == 8
    assert len(set(_keys(after))) == 8  # each configuration exactly once
    assert [r.timestamp for r in after[: len(before)]] == [r.timestamp for r in before]  # old rows untouched
    # per-layer files beside the CSV, one per configuration
    assert all((tmp_path / r.layers_file).is_file() for r in after)


def test_existing_file_without_resume_is_refused(tmp_path):
    out = tmp_path / "r.csv"
    out.write_text("model,batch,seconds,precision,status\n")
    result = run_cli("sweep", *TINY_GRID, "--out", str(out))
    assert result.returncode == 2 and "--resume" in result.stderr


def test_mem_limit_records_oom_and_goes_on(tmp_path):
    out = tmp_path / "r.csv"
    # tiny at batch 1 x 1 s stays near the ~0.8 GB of an imported torch; batch 48 x 30 s needs ~10 GB.
    result = run_cli("sweep", "--model", "tiny", "--seconds", "1,30", "--batch", "1,48", "--precision", "fp32",
                     "--repeats", "1", "--mem-limit", "2GiB", "--no-prune", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = {(r.batch, r.seconds): r for r in _rows(out)}
    assert rows[(1, 1.0)].status == "ok"
    assert rows[(48, 30.0)].status == "oom"
    assert "--mem-limit" in rows[(48, 30.0)].error
    assert rows[(48, 30.0)].mem_limit_bytes == 2 * 2**30


def test_timeout_is_recorded(tmp_path):
    out = tmp_path / "r.csv"
    # tiny at batch 8 x 30 s: about a second per step, so 6 steps cannot finish in 1 s
    result = run_cli("sweep", "--model", "tiny", "--seconds", "30", "--batch", "8", "--precision", "fp32",
                     "--timeout", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    (row,) = _rows(out)
    assert row.status == "timeout" and row.sec_per_batch_median is None


class _Quiet:
    def started(self, total, to_run): pass
    def running(self, index, config, eta_s): pass
    def finished(self, index, record, wall_s): pass


def test_oom_prunes_configurations_that_need_at_least_as_much(tmp_path):
    spec = GridSpec(("tiny",), (1.0, 2.0), (1, 4, 8), ("fp32",), repeats=1)
    configs = expand(spec, "cpu", {})
    measured = []

    def fake_measure(config: ProfileConfig, options):
        measured.append((config.batch, config.seconds))
        status = "oom" if config.batch >= 4 else "ok"
        return ResultRecord(model=config.model, batch=config.batch, seconds=config.seconds,
                            precision=config.precision, device="cpu", status=status), []

    options = SweepOptions(out=tmp_path / "r.csv", device_identity={"device_fingerprint": "f"})
    rows = run_sweep(configs, options, [], _Quiet(), measure=fake_measure)
    by_key = {(r.batch, r.seconds): r for r in rows}
    # cheap first: (1,1) (1,2) (4,1) then (8,1), (4,2), (8,2) are implied by the OOM of (4,1)
    assert measured == [(1, 1.0), (1, 2.0), (4, 1.0)]
    for key in [(8, 1.0), (4, 2.0), (8, 2.0)]:
        assert by_key[key].status == "oom"
        assert by_key[key].skipped_because == "tiny batch 4 1 s fp32 was oom"
    assert len(_rows(tmp_path / "r.csv")) == 6

    measured.clear()
    options.prune = False
    options.out = tmp_path / "r2.csv"
    run_sweep(configs, options, [], _Quiet(), measure=fake_measure)
    assert len(measured) == 6


def test_cheap_first_order():
    spec = GridSpec(("tiny", "base"), (4.0, 1.0), (4, 1), ("mixed", "fp32"))
    configs = expand(spec, "cpu", {})
    assert [c.model for c in configs[:8]] == ["tiny"] * 8
    tiny = [(c.batch * c.seconds, c.precision) for c in configs[:8]]
    assert tiny[:2] == [(1.0, "fp32"), (1.0, "mixed")]
    assert [cost for cost, _ in tiny] == sorted(cost for cost, _ in tiny)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--preset", "huge"], "unknown --preset 'huge'"),
        (["--batch", "0"], "--batch must be a positive whole number"),
        (["--seconds", "x"], "--seconds must be a positive number"),
        (["--mem-limit", "lots"], "--mem-limit must be a size"),
        (["--model", "tiny,nope"], "unknown model 'nope'"),
        (["--precision", "fp16"], "unknown precision 'fp16'"),
        (["--out", "/nonexistent-folder/r.csv"], "does not exist"),
    ],
)
def test_sweep_bad_input_is_one_line_and_exit_2(args, fragment):
    result = run_cli("sweep", *args)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr


def test_resume_on_a_foreign_csv_is_refused_and_leaves_it_untouched(tmp_path):
    foreign = tmp_path / "sales.csv"
    foreign.write_text("region,revenue\nnorth,10\n")
    before = foreign.read_bytes()
    result = run_cli("sweep", *TINY_GRID, "--out", str(foreign), "--resume")
    assert result.returncode == 2
    assert "not a w2vprof" in result.stderr and str(foreign) in result.stderr
    assert foreign.read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_out_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    result = run_cli("sweep", *TINY_GRID, "--out", str(folder / "r.csv"))
    assert result.returncode == 2 and "not writable" in result.stderr


def test_torn_last_line_is_dropped_on_resume(tmp_path):
    from w2vprof.sweep.writer import ResultsWriter, load_existing

    out = tmp_path / "r.csv"
    writer = ResultsWriter(out)
    writer.append(ResultRecord(model="tiny", batch=1, seconds=1.0, precision="fp32", device="cpu"))
    with open(out, "a") as handle:
        handle.write("tiny,2,1.0,fp32,cp")  # a power cut in the middle of a write
    rows = load_existing(out)
    assert len(rows) == 1
    assert out.read_text().endswith("\n")


def test_sigterm_stops_cleanly_with_the_resume_command(tmp_path):
    out = tmp_path / "r.csv"
    process = subprocess.Popen(
        [sys.executable, "-m", "w2vprof.cli.main", "sweep", "--model", "tiny", "--seconds", "0.5,30",
         "--batch", "1,8", "--precision", "fp32", "--repeats", "3", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.exists() and len(out.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Interrupted" in stderr and "--resume" in stderr
    assert 1 <= len(_rows(out)) < 4
