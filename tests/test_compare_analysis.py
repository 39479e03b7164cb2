"""compare / fl-estimate / forecast / feasibility: the paper's figures come out of the data, and small inputs
give answers that can be checked by hand."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from w2vprof.analysis.compare import compare
from w2vprof.analysis.data import DeviceProfile, load_profiles, paper_results
from w2vprof.analysis.estimates import FlSetting, feasibility, fit_memory, fl_estimate, forecast
from w2vprof.records import read_results_csv

DATA = Path(__file__).parent / "data"


def _row(rows, **match):
    return next(r for r in rows if all(getattr(r, k) == v for k, v in match.items()))


def test_paper_ratios_come_out_of_the_table():
    comparison = compare(paper_results(), baseline="NVIDIA A40")
    slow = lambda d: _row(comparison.rows, device=d, model="base", batch=1, precision="fp32").slowdown_vs_baseline  # noqa: E731
    assert slow("MacBook Pro 2019") == pytest.approx(31, abs=0.5)  # 3.76 / 0.12
    assert slow("Raspberry Pi 4") == pytest.approx(138, abs=1)  # 16.60 / 0.12
    gain = lambda d: _row(comparison.batch_gains, device=d, model="base", precision="fp32").per_sequence_gain  # noqa: E731
    assert gain("MacBook Pro 2019") == pytest.approx(0.15, abs=0.01)  # 1 - 12.83 / 4 / 3.76
    assert gain("Raspberry Pi 4") == pytest.approx(0.20, abs=0.01)
    assert gain("Jetson Xavier AGX") == pytest.approx(0.29, abs=0.01)
    assert gain("Jetson Xavier NX") == pytest.approx(0.33, abs=0.01)
    nx = _row(comparison.mixed_speedups, device="Jetson Xavier NX", model="base", batch=4)
    assert nx.mixed_speedup == pytest.approx(1.56, abs=0.01)  # 1.78 / 1.14
    assert {(r.device, r.model, r.batch, r.precision) for r in comparison.ooms} >= {("Raspberry Pi 4", "large", 1, "fp32")}


def test_compare_csv_columns_and_cli(tmp_path):
    result = run_cli("compare", "--reference", "paper", "--baseline", "NVIDIA A40", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0])[:7] == ["device", "model", "batch", "precision", "sec_per_batch", "status", "slowdown_vs_baseline"]
    devices = {r["device"] for r in rows}
    assert devices == {"NVIDIA A40", "MacBook Pro 2019", "Raspberry Pi 4", "Jetson Xavier AGX", "Jetson Xavier NX"}
    for fmt in ("md", "json", "table"):
        assert run_cli("compare", str(DATA / "small.csv"), "--reference", "paper", "--format", fmt).returncode == 0
    as_json = json.loads(run_cli("compare", "--reference", "paper", "--format", "json").stdout)
    assert {"rows", "batch_gains", "mixed_speedups", "oom"} <= set(as_json)


def test_compare_works_outside_the_source_tree(tmp_path):
    import subprocess
    import sys

    code = "from w2vprof.analysis.data import paper_results; print(len(paper_results()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "40"


def test_fl_estimate_reproduces_the_paper():
    rows = {r.device: r for r in fl_estimate(paper_results(), FlSetting())}
    # 19,500 / 4 = 4,875 batches; x 0.27 s = 1,316 s = 0.366 h; x 150 rounds = 2.29 days
    assert rows["NVIDIA A40"].epoch_hours == pytest.approx(0.37, rel=0.03)
    assert rows["NVIDIA A40"].total_days == pytest.approx(2.31, rel=0.03)
    for device, days in (("MacBook Pro 2019", 110), ("Raspberry Pi 4", 456), ("Jetson Xavier AGX", 9), ("Jetson Xavier NX", 15)):
        assert rows[device].total_days == pytest.approx(days, rel=0.03), device


def test_fl_estimate_csv_and_bandwidth():
    result = run_cli("fl-estimate", "--reference", "paper", "--format", "csv")
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0].split(",")
    assert {"device", "epoch_hours", "total_days"} <= set(header)
    slow_link = fl_estimate(paper_results(), FlSetting(bandwidth_mbps=8.0, model_bytes=10**9))
    # two 1 GB copies over 8 Mbit/s: 2 * 8e9 / 8e6 = 2,000 s = 0.556 h per round
    assert _row(slow_link, device="NVIDIA A40").communication_hours_per_round == pytest.approx(2000 / 3600)


def test_forecast_nx_reaches_a40_in_2026():
    result = forecast(paper_results(), "Jetson Xavier NX", "NVIDIA A40")
    # 1.78 / 0.27 = 6.59; log2(6.59) * 1.5 years = 4.08 -> 2026.08
    assert result.ratio == pytest.approx(6.59, abs=0.01)
    assert 2026 <= result.year <= 2027
    cli = run_cli("forecast", "--device", "Jetson Xavier NX", "--target", "NVIDIA A40")
    assert cli.returncode == 0 and "6.59" in cli.stdout and "18 months" in cli.stdout


def test_memory_fit_and_decisions_on_known_inputs():
    fits = {(f.model, f.precision): f for f in fit_memory(read_results_csv(DATA / "small.csv"))}
    fp32 = fits[("base", "fp32")]
    assert fp32.intercept_bytes == pytest.approx(1.0e9, rel=1e-6)
    assert fp32.bytes_per_batch_second == pytest.approx(0.5e9, rel=1e-6)
    assert fp32.r2 == pytest.approx(1.0)
    assert (fp32.min_batch_seconds, fp32.max_batch_seconds) == (4.0, 16.0)
    board = DeviceProfile("Board 8GB", "edge", 8.0, True, None, None, False, "test")
    rows = feasibility([fp32, fits[("base", "mixed")]], [board], usable_fraction=0.5, batches=(1, 4), target_seconds=5.5)
    one = _row(rows, precision="fp32", batch=1)
    # usable 4 GB: (4 - 1) / 0.5 = 6 s at batch 1; at batch 4: 3 / 2 = 1.5 s
    assert one.max_seconds == pytest.approx(6.0) and one.fits_at_seconds
    four = _row(rows, precision="fp32", batch=4)
    assert four.max_seconds == pytest.approx(1.5) and not four.fits_at_seconds
    assert not one.extrapolated  # 6 batch x s is within 2 x 16
    mixed = _row(rows, precision="mixed", batch=1)
    assert not mixed.fits_at_seconds and "no mixed precision" in mixed.note


def test_feasibility_refuses_a_single_point(tmp_path):
    from w2vprof.records import RESULT_COLUMNS, write_records_csv

    one = [r for r in read_results_csv(DATA / "small.csv") if r.seconds == 1.0 and r.precision == "fp32"]
    path = tmp_path / "one.csv"
    write_records_csv(path, one, RESULT_COLUMNS)
    result = run_cli("feasibility", str(path))
    assert result.returncode == 2 and "two or more" in result.stderr


def test_feasibility_cli_with_shipped_profiles():
    result = run_cli("feasibility", str(DATA / "small.csv"), "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    names = {p.name for p in load_profiles()}
    assert {r["device"] for r in rows} <= names and "Raspberry Pi 5" in names
    assert run_cli("feasibility", str(DATA / "small.csv")).returncode == 0


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["fl-estimate", "--reference", "paper", "--rounds", "-1"], "--rounds must be positive"),
        (["fl-estimate", "--reference", "paper", "--model", "large", "--batch", "2"], "no usable rows"),
        (["fl-estimate"], "no usable rows"),
        (["forecast", "--device", "Jetson Nano 2GB"], "unknown device 'Jetson Nano 2GB'"),
        (["compare", "--reference", "paper", "--baseline", "Cray-1"], "unknown --baseline device"),
        (["compare", "--reference", "nope"], "unknown --reference"),
        (["compare", str(DATA / "not_w2vprof.csv")], "not_w2vprof.csv: not a w2vprof"),
    ],
)
def test_bad_input_one_line_exit_2(args, fragment):
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr
