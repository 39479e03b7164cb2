"""Seconds per layer, the calibrated ceilings and the trace, wired into the tool (issue 14): profile, sweep, devices,
report and compare.

Every time that an assertion compares exactly comes from a FAKE clock that only sleeps advance (the layer made
slow on purpose), and every ceiling from a fake calibration (tests/conftest.py puts one in the session's cache;
the devices tests measure with fake operations on a fake clock): nothing here depends on this machine's speed.
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import FAKE_MEM_BW, FAKE_PEAK_FLOPS_FP32, run_cli, run_cli_in_process
from test_calibrate import FakeClock as CalibrationClock
from test_calibrate import FakeOps
from test_layer_timing import FakeClock, slow_down
from w2vprof.devices.calibrate import Calibration, cache_path
from w2vprof.measure.diagnostics import OTHER_KIND, ceiling_fields, time_summary_line
from w2vprof.measure.engine import ProfileConfig, build_measured_model, profile_configuration
from w2vprof.records import (
    LAYER_COLUMNS,
    RESULT_COLUMNS,
    LayerRecord,
    ResultRecord,
    read_layers_csv,
    read_results_csv,
    write_records_csv,
)

PNG = b"\x89PNG\r\n\x1a\n"
TINY = ["--model", "tiny", "--batch", "2", "--seconds", "1", "--repeats", "2"]


def _cli(*args: str) -> tuple[int, str, str]:
    result = run_cli_in_process(*args)
    return result.returncode, result.stdout, result.stderr


# -- profile: layers.csv, run.json, the ceilings, the trace --------------------------------------------------------
@pytest.fixture(scope="module")
def profiled(tmp_path_factory) -> Path:
    """`w2vprof profile` on tiny, in this process, with two layer repeats and a trace."""
    out = tmp_path_factory.mktemp("profile") / "run"
    result = run_cli_in_process(
        "profile", *TINY, "--layer-repeats", "2", "--trace", str(out.parent / "step.json"), "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "Most time per step:" in result.stdout and "Trace:" in result.stdout
    return out


@pytest.mark.integration
def test_layers_csv_has_seconds_per_layer_and_an_other_row_adding_up_to_the_step(profiled):
    layers = read_layers_csv(profiled / "layers.csv")
    *rows, other = layers
    assert (other.layer, other.kind) == ("other", OTHER_KIND)
    assert other.fwd_sec is None and other.bwd_sec is None and other.sec is not None and other.sec >= 0
    assert other.cum_act_mem_bytes == rows[-1].cum_act_mem_bytes and other.act_mem_bytes == 0
    for row in rows:
        assert row.fwd_sec is not None and row.bwd_sec is not None, row.layer
        assert row.sec == pytest.approx(row.fwd_sec + row.bwd_sec)
        if row.fwd_flops and row.fwd_sec:
            assert row.fwd_flops_per_sec == pytest.approx(row.fwd_flops / row.fwd_sec)
    assert rows[0].io_bytes and rows[0].io_bytes > 0  # the waveform in, the first convolution's output out
    assert sum(row.time_share for row in layers) == pytest.approx(1.0)
    run_json = json.loads((profiled / "run.json").read_text())
    timing = run_json["layer_timing"]
    assert timing["repeats"] == 2
    assert timing["rows_sum_sec"] == pytest.approx(sum(row.sec for row in layers))
    (record,) = read_results_csv(profiled / "results.csv")
    assert timing["median_step_sec"] == pytest.approx(record.sec_per_batch_median)
    assert timing["rows_sum_over_median_step"] == pytest.approx(timing["rows_sum_sec"] / timing["median_step_sec"])
    assert len(timing["samples_s"]["cnn.0/fwd"]) == 2
    assert run_json["config"]["layer_repeats"] == 2


@pytest.mark.integration
def test_profile_records_the_cached_calibration(profiled):
    (record,) = read_results_csv(profiled / "results.csv")
    assert record.peak_flops_fp32_measured == FAKE_PEAK_FLOPS_FP32
    assert record.mem_bw_measured == FAKE_MEM_BW


@pytest.mark.integration
def test_the_trace_is_valid_json_naming_every_layer_in_layers_csv(profiled):
    events = json.loads((profiled.parent / "step.json").read_text())["traceEvents"]
    names = {event.get("name") for event in events}
    layers = [row.layer for row in read_layers_csv(profiled / "layers.csv") if row.kind != OTHER_KIND]
    assert [name for name in layers if name not in names] == []
    assert {"forward", "backward", "optimizer step"} <= names


def _slowed_model(config: ProfileConfig, clock: FakeClock):
    built = build_measured_model(config, "cpu")
    slow_down(built.model, "feature_extractor.conv_layers.3", sleep=clock.sleep, forward_sec=0.5)
    slow_down(built.model, "transformer.layers.1", sleep=clock.sleep, backward_sec=0.75)
    return built


@pytest.mark.integration
def test_a_slow_layer_lands_on_that_layer_and_direction_in_the_records(monkeypatch):
    import w2vprof.measure.layer_timing as layer_timing

    clock = FakeClock()
    monkeypatch.setattr(layer_timing, "time_layers", functools.partial(layer_timing.time_layers, clock=clock))
    config = ProfileConfig(
        model="tiny", batch=2, seconds=1.0, repeats=1, device="cpu", telemetry=False, layer_repeats=3, calibrate="off"
    )
    result = profile_configuration(config, model=_slowed_model(config, clock))
    assert result.record.status == "ok", result.record.error
    times = {row.layer: (row.fwd_sec, row.bwd_sec) for row in result.layers if row.kind != OTHER_KIND}
    expected = {layer: (0.0, 0.0) for layer in times}
    expected["cnn.3"], expected["transformer.1"] = (0.5, 0.0), (0.0, 0.75)
    assert times == expected
    cnn3 = next(row for row in result.layers if row.layer == "cnn.3")
    assert cnn3.fwd_flops_per_sec == cnn3.fwd_flops / 0.5 and cnn3.time_share == pytest.approx(0.5 / 1.25)
    assert result.layer_timing["rows_sum_sec"] == 1.25 and result.layers[-1].sec == 0.0


@pytest.mark.integration
def test_a_failing_layer_timing_is_a_warning_and_the_measurement_stands(monkeypatch):
    import w2vprof.measure.layer_timing as layer_timing

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(layer_timing, "time_layers", fail)
    config = ProfileConfig(
        model="tiny", batch=1, seconds=0.5, repeats=1, device="cpu", telemetry=False, layer_repeats=1, calibrate="off"
    )
    result = profile_configuration(config)
    assert result.record.status == "ok" and result.record.sec_per_batch_median
    assert all(row.sec is None for row in result.layers) and result.layer_timing == {}
    assert any("seconds per layer not measured" in warning and "boom" in warning for warning in result.warnings)
    assert "boom" in result.record.notes


@pytest.mark.integration
def test_without_layer_repeats_layers_have_no_times_and_no_other_row():
    config = ProfileConfig(
        model="tiny", batch=1, seconds=0.5, repeats=1, device="cpu", telemetry=False, calibrate="off"
    )
    result = profile_configuration(config)
    assert all(row.sec is None and row.kind != OTHER_KIND for row in result.layers)
    assert result.record.peak_flops_fp32_measured is None


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--layer-repeats", "-1"], "--layer-repeats"),
        (["--layer-repeats", "two"], "--layer-repeats"),
        (["--trace", "/nonexistent-folder/step.json"], "does not exist"),
    ],
)
def test_profile_bad_options_are_one_line_and_exit_2(tmp_path, args, fragment):
    code, _, err = _cli("profile", *TINY, *args, "--out", str(tmp_path / "run"))
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.integration
def test_a_trace_that_cannot_be_written_is_a_warning(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    config = ProfileConfig(
        model="tiny",
        batch=1,
        seconds=0.5,
        repeats=1,
        device="cpu",
        telemetry=False,
        trace=str(not_a_folder / "step.json"),
        calibrate="off",
    )
    result = profile_configuration(config)
    assert result.record.status == "ok"
    assert any(warning.startswith("trace not written") for warning in result.warnings)


def test_the_summary_line_names_the_slowest_layers_and_the_share_of_the_peak():
    layers = [
        LayerRecord("a", "cnn", sec=0.3, time_share=0.6),
        LayerRecord("b", "cnn", sec=0.1, time_share=0.2),
        LayerRecord("other", OTHER_KIND, sec=0.1, time_share=0.2),
    ]
    record = ResultRecord(precision="fp32", achieved_flops_per_sec=25e9, peak_flops_fp32_measured=100e9)
    line = time_summary_line(record, layers, top=2)
    assert line.startswith("Most time per step: a 60 %, b 20 %") and "25 % of the measured matmul peak" in line
    assert time_summary_line(record, [LayerRecord("a", "cnn")]) == ""
    assert "understates" not in line
    low_ceiling = ResultRecord(precision="fp32", achieved_flops_per_sec=25e9, peak_flops_fp32_measured=21e9)
    line = time_summary_line(low_ceiling, layers)
    assert "119 % of the measured matmul peak (above it: the calibration understates this machine; " in line
    assert line.endswith("`w2vprof devices --calibrate --refresh`)")


# -- calibration: modes, devices --calibrate, the sweep's once-per-run ------------------------------------------
def _tiny_calibrate(monkeypatch) -> list[str]:
    """Calibration with fake operations on a fake clock (fp32 at 50 GFLOP/s, bf16 at 80, copies at 20 GB/s);
    returns the list each measurement appends its device to."""
    import w2vprof.devices.calibrate as calibrate_module

    calls: list[str] = []
    real = calibrate_module.calibrate

    def fake(device: str, dtype_mixed: Any = None, **options: Any) -> Calibration:
        calls.append(device)
        clock = CalibrationClock()
        ops = FakeOps(clock, {"float32": 50e9, "bfloat16": 80e9}, 20e9)
        return real(device, dtype_mixed, ops=ops, clock=clock, **options)

    monkeypatch.setattr(calibrate_module, "calibrate", fake)
    return calls


def test_calibration_modes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = _tiny_calibrate(monkeypatch)
    assert ceiling_fields("cpu", "off") == ({}, "")
    assert ceiling_fields("cpu", "cached") == ({}, "")  # an empty cache: nothing, and nothing measured
    assert calls == []
    fields, warning = ceiling_fields("cpu", "measure")
    assert warning == "" and calls == ["cpu"]
    assert fields["peak_flops_fp32_measured"] == pytest.approx(50e9)
    assert fields["peak_flops_mixed_measured"] == pytest.approx(80e9)
    assert fields["mem_bw_measured"] == pytest.approx(20e9)
    assert ceiling_fields("cpu", "cached")[0] == fields and calls == ["cpu"]  # now from the cache


def test_a_failing_calibration_is_a_warning(monkeypatch, tmp_path):
    import w2vprof.devices.calibrate as calibrate_module

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(calibrate_module, "calibrate", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no")))
    assert ceiling_fields("cpu", "measure") == ({}, "calibration failed: RuntimeError: no")


def test_devices_calibrate_prints_caches_and_refreshes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = _tiny_calibrate(monkeypatch)
    code, out, _ = _cli("devices", "--calibrate", "--device", "cpu")
    assert code == 0 and calls == ["cpu"]
    assert "fp32 matmul:    50.0 GFLOP/s" in out and "memory copy:    20.0 GB/s" in out and "cached in" in out
    code, out, _ = _cli("devices", "--calibrate", "--device", "cpu", "--format", "json")
    assert code == 0 and calls == ["cpu"]  # the cache answered
    calibration = Calibration.from_json(out)
    assert cache_path(calibration.device_fingerprint, calibration.threads).is_file()
    code, _, _ = _cli("devices", "--calibrate", "--refresh", "--device", "cpu", "--threads", "1")
    assert code == 0 and calls == ["cpu", "cpu"]


def test_devices_refresh_without_calibrate_is_one_line():
    code, _, err = _cli("devices", "--refresh")
    assert code == 2 and "--calibrate" in err and len(err.strip().splitlines()) == 1


def test_a_sweep_uses_the_cached_calibration_and_measures_one_otherwise(tmp_path, monkeypatch, _fake_calibration_cache):
    from w2vprof.sweep.calibration import ensure_calibration

    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("calibrated although the cache has one")

    steps: list[str] = []
    calibration, what = ensure_calibration("cpu", measure=must_not_run, announce=steps.append)
    assert what == "cached" and calibration == _fake_calibration_cache
    assert steps == []  # a cached calibration costs nothing: no progress step

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty cache
    asked: list[tuple[str, int, Path]] = []
    measured = replace(_fake_calibration_cache, note="")

    def fake_measure(device: str, threads: int, identity: dict[str, Any], folder: Path) -> Any:
        asked.append((device, threads, folder))
        return measured, "measured"

    calibration, what = ensure_calibration("cpu", threads=3, measure=fake_measure)
    assert calibration == measured and what.startswith("measured in ")
    assert asked == [("cpu", 3, tmp_path / "w2vprof")]

    failed = (None, "calibration failed: w2vprof: something broke")
    assert ensure_calibration("cpu", measure=lambda *a: failed) == failed


def test_sweep_passes_layer_repeats_to_every_configuration(tmp_path):
    from w2vprof.sweep.plan import SweepRequest, plan_sweep

    request = SweepRequest(
        models=("tiny",),
        seconds=(1.0,),
        batches=(1, 2),
        precisions=("fp32",),
        device="cpu",
        out=tmp_path / "r.csv",
        layer_repeats=2,
    )
    with plan_sweep(request, warm_start=False) as plan:
        assert [config.layer_repeats for config in plan.configs] == [2, 2]
    with plan_sweep(replace(request, out=tmp_path / "s.csv", layer_repeats=0), warm_start=False) as plan:
        assert {config.layer_repeats for config in plan.configs} == {0}


@pytest.mark.integration
def test_a_real_sweep_child_records_layer_times_and_the_calibration(tmp_path):
    out = tmp_path / "r.csv"
    result = run_cli(
        "sweep",
        "--model",
        "tiny",
        "--seconds",
        "0.5",
        "--batch",
        "1",
        "--precision",
        "fp32",
        "--repeats",
        "1",
        "--threads",
        "2",
        "--layer-repeats",
        "1",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "calibration (cached)" in result.stderr
    (record,) = read_results_csv(out)
    assert record.status == "ok" and record.peak_flops_fp32_measured == FAKE_PEAK_FLOPS_FP32
    layers = read_layers_csv(out.parent / record.layers_file)
    assert layers[-1].kind == OTHER_KIND and all(row.sec is not None for row in layers)


# -- report: Fig. 2's time panel, the roofline, the table ------------------------------------------------------
def _timed_layers(scale: float = 1.0, slow: str = "", slow_factor: float = 1.0) -> list[LayerRecord]:
    """Three layers and `other`, with times (scaled; `slow` scaled again by `slow_factor`)."""
    rows = [
        LayerRecord(
            "cnn.0",
            "cnn",
            params=100,
            fwd_flops=1_000,
            bwd_flops=1_000,
            act_mem_bytes=4_000,
            cum_act_mem_bytes=4_000,
            fwd_sec=0.010,
            bwd_sec=0.030,
            io_bytes=1_600,
        ),
        LayerRecord(
            "transformer.0",
            "transformer",
            params=1_000,
            fwd_flops=400_000,
            bwd_flops=800_000,
            act_mem_bytes=2_000,
            cum_act_mem_bytes=6_000,
            fwd_sec=0.020,
            bwd_sec=0.040,
            io_bytes=4_000,
        ),
        LayerRecord(
            "objective",
            "loss",
            fwd_flops=0,
            bwd_flops=0,
            cum_act_mem_bytes=6_000,
            fwd_sec=0.001,
            bwd_sec=0.001,
            io_bytes=0,
        ),
        LayerRecord("other", OTHER_KIND, cum_act_mem_bytes=6_000, sec=0.008),
    ]
    timed = []
    for row in rows:
        factor = scale * (slow_factor if row.layer == slow else 1.0)
        fwd, bwd = (None if v is None else v * factor for v in (row.fwd_sec, row.bwd_sec))
        sec = fwd + bwd if fwd is not None and bwd is not None else (row.sec or 0.0) * factor
        timed.append(replace(row, fwd_sec=fwd, bwd_sec=bwd, sec=sec))
    total = sum(row.sec or 0.0 for row in timed)
    return [replace(row, time_share=(row.sec or 0.0) / total) for row in timed]


def _write_run(folder: Path, device: str, layers: list[LayerRecord], **record: Any) -> Path:
    """A results file of one configuration (base, batch 4, 5.5 s, fp32) whose layers_file points at `layers`."""
    folder.mkdir(parents=True, exist_ok=True)
    write_records_csv(folder / "layers.csv", layers, LAYER_COLUMNS)
    row = ResultRecord(
        model="base",
        batch=4,
        seconds=5.5,
        precision="fp32",
        device="cpu",
        device_name=device,
        hostname=device,
        sec_per_batch_median=1.0,
        param_bytes=4_400,
        layers_file="layers.csv",
        **record,
    )
    write_records_csv(folder / "results.csv", [row], RESULT_COLUMNS)
    return folder / "results.csv"


def test_roofline_points_are_flops_per_byte_of_io_and_weights():
    from w2vprof.report.build import roofline_points

    record = ResultRecord(param_bytes=4_400)  # 1,100 parameters: 4 bytes each
    points = {point.layer: point for point in roofline_points(_timed_layers(), record)}
    assert set(points) == {"cnn.0", "transformer.0"}  # objective has no FLOPs, other is no layer
    assert points["cnn.0"].intensity == pytest.approx(2_000 / (1_600 + 100 * 4))
    assert points["cnn.0"].flops_per_sec == pytest.approx(2_000 / 0.040)
    assert points["transformer.0"].intensity == pytest.approx(1_200_000 / (4_000 + 1_000 * 4))


@pytest.mark.integration
def test_every_new_plot_draws_and_degrades_without_data():
    from w2vprof.report import plots

    layers = _timed_layers()
    assert plots.layer_time_png(layers, "t").startswith(PNG)
    assert plots.layer_time_png([replace(row, sec=None) for row in layers], "t") is None
    points = [
        plots.RooflinePoint("cnn.0", "cnn", 1.0, 5e8),
        plots.RooflinePoint("transformer.0", "transformer", 80.0, 4e10),
    ]
    for peak, bandwidth in ((1e11, 1e10), (1e11, None), (None, 1e10), (None, None)):
        assert plots.layer_roofline_png(points, peak, bandwidth, "r").startswith(PNG)
    assert plots.layer_roofline_png([], 1e11, 1e10, "r") is None
    # the other row is no layer: memory and FLOPs plots leave it out
    assert plots.layer_memory_png([layers[-1]], "m") is None and plots.layer_flops_png([layers[-1]], "f") is None


@pytest.mark.integration
def test_the_report_shows_layer_times_and_the_roofline(tmp_path):
    from w2vprof.report.build import build_report, load_inputs

    path = _write_run(tmp_path / "a", "box", _timed_layers(), peak_flops_fp32_measured=1e11, mem_bw_measured=1e10)
    report = build_report(load_inputs([path]))
    assert report.figures["fig2_time.png"].startswith(PNG)
    assert report.figures["roofline_layers.png"].startswith(PNG)
    assert "measured matmul and copy ceilings" in report.captions["roofline_layers.png"]
    table = report.tables["layer_times"]
    assert [row[0] for row in table.rows] == ["cnn.0", "transformer.0", "objective", "other", "step (rows' sum)"]
    assert "of matmul peak (%)" in table.columns
    assert table.rows[0][table.columns.index("total (ms)")] == "40.0"


@pytest.mark.integration
def test_the_report_degrades_without_layer_times_or_calibration(tmp_path):
    from w2vprof.report.build import build_report, load_inputs

    untimed = [replace(row, fwd_sec=None, bwd_sec=None, sec=None, time_share=None) for row in _timed_layers()[:-1]]
    report = build_report(load_inputs([_write_run(tmp_path / "a", "box", untimed)]))
    assert "fig2_time.png" not in report.figures and "roofline_layers.png" not in report.figures
    assert "fig2_activation_memory.png" in report.figures
    assert any("No seconds per layer" in note for note in report.notes)
    report = build_report(load_inputs([_write_run(tmp_path / "b", "box", _timed_layers())]))
    assert "no calibration" in report.captions["roofline_layers.png"]


# -- compare --layers ------------------------------------------------------------------------------------------
@pytest.fixture
def two_devices(tmp_path) -> list[Path]:
    """A fast box and a board twice as slow, except cnn.0, which is five times as slow there."""
    return [
        _write_run(tmp_path / "fast", "fast box", _timed_layers()),
        _write_run(tmp_path / "board", "small board", _timed_layers(2.0, "cnn.0", 2.5)),
    ]


def test_compare_layers_sorts_by_the_slowdown_on_the_smaller_device(two_devices):
    from w2vprof.analysis.compare import compare_layers, load_layer_sets

    sets, notes = load_layer_sets(two_devices[::-1])
    comparison = compare_layers(sets, notes=notes)
    assert comparison.devices == ["fast box", "small board"] and comparison.baseline == "fast box"
    assert comparison.config == "base, batch 4, 5.5 s, fp32"
    first = comparison.rows[0]
    assert first.layer == "cnn.0" and first.ratio["small board"] == pytest.approx(5.0)
    assert first.sec == {"fast box": pytest.approx(0.040), "small board": pytest.approx(0.200)}
    assert [row.ratio["small board"] for row in comparison.rows[1:]] == [pytest.approx(2.0)] * 3
    step = comparison.total.ratio["small board"]
    assert step == pytest.approx((0.2 + 2 * (0.06 + 0.002 + 0.008)) / 0.11)


def test_compare_layers_every_format(two_devices, tmp_path):
    code, out, err = _cli("compare", "--layers", *map(str, two_devices))
    assert code == 0, err
    assert "small board / fast box" in out and "5.00x" in out and out.index("cnn.0") < out.index("transformer.0")
    code, out, _ = _cli("compare", "--layers", "--format", "csv", *map(str, two_devices))
    header, first, *_ = out.splitlines()
    assert header == "layer,kind,sec:fast box,share:fast box,sec:small board,share:small board,ratio:small board"
    assert first.startswith("cnn.0,cnn,") and float(first.split(",")[-1]) == pytest.approx(5.0)
    code, out, _ = _cli("compare", "--layers", "--format", "json", *map(str, two_devices))
    data = json.loads(out)
    assert data["baseline"] == "fast box" and data["rows"][0]["layer"] == "cnn.0"
    code, out, _ = _cli("compare", "--layers", "--format", "md", "--baseline", "small board", *map(str, two_devices))
    assert code == 0 and out.startswith("**Seconds per layer per device") and "| fast box / small board |" in out
    target = tmp_path / "layers.txt"
    code, _, _ = _cli("compare", "--layers", "--out", str(target), *map(str, two_devices))
    assert code == 0 and "\x1b[" not in target.read_text()


def test_compare_layers_reads_bare_layers_files_by_their_folder(two_devices):
    from w2vprof.analysis.compare import compare_layers, load_layer_sets

    sets, _ = load_layer_sets([path.parent / "layers.csv" for path in two_devices])
    comparison = compare_layers(sets)
    assert comparison.devices == ["fast", "board"] and comparison.config == "layers files as given"


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--reference", "paper"], "--reference"),
        (["--baseline", "nobody"], "nobody"),
    ],
)
def test_compare_layers_bad_input_is_one_line(two_devices, extra, fragment):
    code, _, err = _cli("compare", "--layers", *extra, *map(str, two_devices))
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1


def test_compare_layers_needs_two_devices_with_times(two_devices, tmp_path):
    untimed = [replace(row, sec=None, fwd_sec=None, bwd_sec=None) for row in _timed_layers()]
    other = _write_run(tmp_path / "untimed", "untimed box", untimed)
    code, _, err = _cli("compare", "--layers", str(two_devices[0]), str(other))
    assert code == 2 and "at least two devices" in err and len(err.strip().splitlines()) == 1
