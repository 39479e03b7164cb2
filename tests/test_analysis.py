"""feasibility / fl-estimate / forecast: the paper's figures come out of the data, and small inputs give
answers that can be checked by hand."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from conftest import run_cli_in_process
from w2vprof.analysis.data import paper_results
from w2vprof.analysis.feasibility import feasibility, fit_memory
from w2vprof.analysis.fl_estimate import FlSetting, fl_estimate
from w2vprof.analysis.forecast import forecast
from w2vprof.devices.profiles import DeviceProfile, load_profiles
from w2vprof.errors import BadInput
from w2vprof.records import RESULT_COLUMNS, read_results_csv, replace, write_records_csv

DATA = Path(__file__).parent / "data"


def _row(rows, **match):
    return next(r for r in rows if all(getattr(r, k) == v for k, v in match.items()))


# -- fl-estimate ----------------------------------------------------------------------------------------------
def test_fl_estimate_reproduces_the_paper():
    rows = {r.device: r for r in fl_estimate(paper_results(), FlSetting())}
    # 19,500 / 4 = 4,875 batches x 0.27 s = 1,316 s = 0.366 h; x 150 rounds = 54.8 h = 2.29 days
    assert rows["NVIDIA A40"].batches_per_epoch == 4875
    assert rows["NVIDIA A40"].epoch_hours == pytest.approx(0.37, rel=0.03)
    assert rows["NVIDIA A40"].total_days == pytest.approx(2.31, rel=0.03)
    for device, days in (
        ("MacBook Pro 2019", 110),
        ("Raspberry Pi 4", 456),
        ("Jetson Xavier AGX", 9),
        ("Jetson Xavier NX", 15),
    ):
        assert rows[device].total_days == pytest.approx(days, rel=0.03), device


def test_fl_estimate_cli_csv():
    result = run_cli_in_process("fl-estimate", "--reference", "paper", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {"device", "epoch_hours", "total_days"} <= set(rows[0])
    assert float(_dict(rows, "Raspberry Pi 4")["total_days"]) == pytest.approx(456, rel=0.03)
    table = run_cli_in_process("fl-estimate", "--reference", "paper")
    assert table.returncode == 0 and "Jetson Xavier NX" in table.stdout


def _dict(rows, device):
    return next(r for r in rows if r["device"] == device)


def test_local_epochs_sampling_and_bandwidth_arithmetic():
    base = _row(fl_estimate(paper_results(), FlSetting()), device="NVIDIA A40")
    two = _row(fl_estimate(paper_results(), FlSetting(local_epochs=2)), device="NVIDIA A40")
    assert two.epoch_hours == base.epoch_hours and two.total_hours == pytest.approx(2 * base.total_hours)
    sampled = _row(
        fl_estimate(paper_results(), FlSetting(clients=100, clients_per_round=20, rounds=500)), device="NVIDIA A40"
    )
    # 500 rounds x 20 clients / 100 clients = each client trains in 100 rounds; 500 x 20 x 0.3656 h = 3,656 h
    assert sampled.rounds_per_client == 100 and sampled.device_hours == pytest.approx(500 * 20 * 4875 * 0.27 / 3600)
    linked = _row(fl_estimate(paper_results(), FlSetting(bandwidth_mbps=8.0, model_bytes=10**9)), device="NVIDIA A40")
    # two 1 GB copies over 8 Mbit/s: 2 x 8e9 bit / 8e6 bit/s = 2,000 s per round
    assert linked.communication_hours_per_round == pytest.approx(2000 / 3600)
    assert linked.round_hours == pytest.approx(base.round_hours + 2000 / 3600)


def test_measured_rows_at_several_lengths_give_one_row_each():
    rows = fl_estimate(read_results_csv(DATA / "small.csv"), FlSetting(samples_per_client=100))
    assert sorted(r.seconds for r in rows) == [1.0, 2.0, 4.0]
    only = fl_estimate(read_results_csv(DATA / "small.csv"), FlSetting(samples_per_client=100, seconds=2.0))
    # 100 / 4 = 25 batches x 1.0 s = 25 s
    assert [r.epoch_hours for r in only] == [pytest.approx(25 / 3600)]


# -- forecast ----------------------------------------------------------------------------------------------
def test_forecast_nx_reaches_the_a40_in_2026():
    result = forecast(paper_results(), "Jetson Xavier NX", "NVIDIA A40")
    # 1.78 / 0.27 = 6.59; log2(6.59) = 2.72 doublings x 1.5 years = 4.08 years -> 2026.08
    assert result.ratio == pytest.approx(6.593, abs=0.001)
    assert result.years == pytest.approx(4.08, abs=0.01) and 2026 <= result.year <= 2027
    cli = run_cli_in_process("forecast", "--device", "Jetson Xavier NX", "--target", "NVIDIA A40")
    assert cli.returncode == 0 and "ratio 6.59" in cli.stdout and "doubles every 18 months" in cli.stdout
    assert "2026.1" in cli.stdout
    as_json = json.loads(run_cli_in_process("forecast", "--device", "Jetson Xavier NX", "--format", "json").stdout)
    assert as_json[0]["year"] == pytest.approx(2026.08, abs=0.01)


def test_forecast_of_a_faster_device_is_no_wait():
    result = forecast(paper_results(), "NVIDIA A40", "Jetson Xavier NX", doubling_months=24)
    assert result.ratio < 1 and result.years == 0 and result.year == 2022


def test_forecast_needs_a_shared_length():
    rows = [replace(r, device_name="Board") for r in read_results_csv(DATA / "small.csv")]
    with pytest.raises(BadInput, match="share no utterance length"):
        forecast(rows + paper_results(), "Board", "NVIDIA A40")


# -- feasibility ----------------------------------------------------------------------------------------------
def test_memory_fit_on_known_points():
    fits = {(f.model, f.precision): f for f in fit_memory(read_results_csv(DATA / "small.csv")).fits}
    # fp32 peaks: 3, 5, 9 GB at batch x seconds 4, 8, 16 -> a = 1 GB, b = 0.5 GB per batch-second, exact
    fp32 = fits[("base", "fp32")]
    assert fp32.intercept_bytes == pytest.approx(1.0e9) and fp32.bytes_per_batch_second == pytest.approx(0.5e9)
    assert fp32.r2 == pytest.approx(1.0) and fp32.points == 3 and fp32.memory_source == "peak_mem_bytes"
    assert (fp32.min_batch_seconds, fp32.max_batch_seconds) == (4.0, 16.0)
    mixed = fits[("base", "mixed")]  # 2.7, 4.5, 8.1 GB -> a = 0.9 GB, b = 0.45 GB
    assert mixed.intercept_bytes == pytest.approx(0.9e9) and mixed.bytes_per_batch_second == pytest.approx(0.45e9)


def test_memory_fit_without_a_peak_uses_the_parts():
    rows = [replace(r, peak_mem_bytes=None) for r in read_results_csv(DATA / "small.csv")]
    fp32 = _row(fit_memory(rows).fits, precision="fp32")
    # act 1.6, 3.2, 6.4 GB + 1.52 GB of params, grads and optimizer state at x = 4, 8, 16:
    # b = 0.4 GB per batch-second, a = 1.52 GB
    assert fp32.memory_source == "act+param+grad+optim"
    assert fp32.intercept_bytes == pytest.approx(1.52e9) and fp32.bytes_per_batch_second == pytest.approx(0.4e9)


def test_decisions_on_a_known_board():
    fits = fit_memory(read_results_csv(DATA / "small.csv"))
    board = DeviceProfile("Board 8GB", "edge", 8.0, True, None, None, False, "test")
    big = DeviceProfile("Server 64GB", "gpu", 64.0, False, None, None, True, "test")
    result = feasibility(fits, [board, big], usable_fraction=0.5, batches=(1, 4), target_seconds=5.5)
    one = _row(result.rows, device="Board 8GB", precision="fp32", batch=1)
    # usable 4 GB: (4 - 1) / 0.5 = 6 s at batch 1; 1 + 0.5 x 5.5 = 3.75 GB at the target
    assert one.max_seconds == pytest.approx(6.0) and one.fits and one.memory_at_target_gb == pytest.approx(3.75)
    assert not one.max_seconds_extrapolated  # 6 batch x s is within 2 x 16
    four = _row(result.rows, device="Board 8GB", precision="fp32", batch=4)
    assert four.max_seconds == pytest.approx(1.5) and not four.fits  # (4 - 1) / (0.5 x 4)
    mixed = _row(result.rows, device="Board 8GB", precision="mixed", batch=1)
    assert not mixed.fits and "no mixed precision" in mixed.note
    server = _row(result.rows, device="Server 64GB", precision="fp32", batch=1)
    # (32 - 1) / 0.5 = 62 s: beyond twice the measured 16 batch x s
    assert server.max_seconds == pytest.approx(62.0) and server.max_seconds_extrapolated
    tiny_board = DeviceProfile("Board 1GB", "edge", 1.0, True, None, None, True, "test")
    none = _row(feasibility(fits, [tiny_board]).rows, precision="fp32", batch=1)
    assert none.max_seconds is None and not none.fits  # 0.7 GB usable < a = 1 GB


def test_feasibility_skips_a_group_with_one_point_and_refuses_when_none_is_left(tmp_path):
    rows = read_results_csv(DATA / "small.csv")
    partial = [r for r in rows if r.precision == "fp32" or r.seconds == 1.0]
    result = fit_memory(partial)
    assert [f.precision for f in result.fits] == ["fp32"] and "base mixed" in result.skipped[0]
    one = tmp_path / "one.csv"
    write_records_csv(one, [r for r in rows if r.seconds == 1.0], RESULT_COLUMNS)
    cli = run_cli_in_process("feasibility", str(one))
    assert cli.returncode == 2 and "two or more" in cli.stderr and len(cli.stderr.strip().splitlines()) == 1


def test_feasibility_cli_with_shipped_and_given_profiles(tmp_path):
    result = run_cli_in_process("feasibility", str(DATA / "small.csv"), "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    names = {p.name for p in load_profiles()}
    assert {r["device"] for r in rows} == names - {p.name for p in load_profiles() if not p.memory_gb}
    assert {"Raspberry Pi 5", "Jetson Orin Nano 8GB", "Apple M2 MacBook Air"} <= names
    (tmp_path / "profiles.csv").write_text("name,memory_gb\nMy Board,8\n")
    mine = run_cli_in_process("feasibility", str(DATA / "small.csv"), "--devices", str(tmp_path), "--format", "json")
    assert {r["device"] for r in json.loads(mine.stdout)} == {"My Board"}
    table = run_cli_in_process("feasibility", str(DATA / "small.csv"), "--device", "Jetson Xavier NX")
    assert table.returncode == 0 and "Jetson Xavier NX" in table.stdout and "Raspberry" not in table.stdout


def test_shipped_profiles_have_memory_and_a_source():
    for profile in load_profiles():
        assert profile.source, profile.name
        assert profile.memory_gb and profile.memory_gb > 0, profile.name


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["fl-estimate", "--reference", "paper", "--rounds", "-1"], "--rounds must be positive"),
        (["fl-estimate", "--reference", "paper", "--clients-per-round", "11"], "--clients-per-round must be between"),
        (["fl-estimate", "--reference", "paper", "--bandwidth", "0"], "--bandwidth must be positive"),
        (["fl-estimate", "--reference", "paper", "--model", "large", "--batch", "2"], "no usable rows"),
        (["fl-estimate"], "no usable rows"),
        (["forecast", "--device", "Jetson Nano 2GB"], "unknown device 'Jetson Nano 2GB'"),
        (["forecast", "--device", "Jetson Xavier NX", "--doubling-months", "0"], "--doubling-months must be positive"),
        (["forecast", "--device", "Raspberry Pi 4", "--model", "large"], "Raspberry Pi 4: no measured time"),
        (["feasibility", str(DATA / "small.csv"), "--device", "Cray-1"], "unknown device 'Cray-1'"),
        (["feasibility", str(DATA / "small.csv"), "--usable-fraction", "1.5"], "--usable-fraction must be in"),
        (["feasibility", str(DATA / "old_schema.csv")], "no usable rows"),
        (["feasibility", str(DATA / "not_w2vprof.csv")], "not_w2vprof.csv: not a w2vprof"),
        (["feasibility", str(DATA / "small.csv"), "--devices", str(DATA / "small.csv")], "not a device profiles file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, fragment):
    result = run_cli_in_process(*args)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr, result.stderr


# -- one key for "the same utterance length" (records.length_key: equal to the millisecond) ---------------------
def _timed(device: str, seconds: float, sec_per_batch: float):
    from w2vprof.records import ResultRecord

    return ResultRecord(
        model="base",
        batch=4,
        seconds=seconds,
        precision="fp32",
        device="cpu",
        status="ok",
        device_name=device,
        sec_per_batch_median=sec_per_batch,
    )


def test_lengths_equal_to_the_millisecond_are_one_length_in_every_analysis():
    from w2vprof.analysis.compare import compare

    # an audio workload records its mean length rounded to 3 decimals; arithmetic can leave float noise
    rows = [_timed("slow", 5.5, 8.0), _timed("fast", 5.5 + 1e-9, 2.0), _timed("fast", 5.502, 1.0)]
    result = forecast(rows, "slow", "fast", doubling_months=12.0)
    assert (result.seconds, result.ratio, result.years) == (5.5, 4.0, 2.0)  # log2(8 / 2) doublings of a year each
    assert len(fl_estimate(rows, FlSetting(seconds=5.5))) == 2  # slow and the noisy fast row; not 5.502
    assert {r.seconds for r in compare(rows, seconds=5.5).rows} == {5.5, 5.5 + 1e-9}
