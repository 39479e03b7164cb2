"""The measurement engine: record schema, exact per-layer attribution, statistics, bad input."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from conftest import run_cli
from w2vprof.measure.activations import ActivationTracker
from w2vprof.measure.engine import ProfileConfig, profile_configuration
from w2vprof.measure.stats import quantile, time_stats
from w2vprof.models.layers import LayerSpec
from w2vprof.records import (
    LAYER_COLUMNS,
    RESULT_COLUMNS,
    SCHEMA_VERSION,
    read_layers_csv,
    read_results_csv,
)


@pytest.mark.integration
def test_profile_writes_the_three_files_with_the_schema(tiny_profile_run):
    out, _ = tiny_profile_run
    with open(out / "results.csv") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == RESULT_COLUMNS
    (record,) = read_results_csv(out / "results.csv")
    assert record.status == "ok" and record.model == "tiny" and record.batch == 2 and record.seconds == 1.0
    for name in (
        "sec_per_batch_median",
        "fwd_flops",
        "bwd_flops",
        "optim_flops",
        "act_mem_bytes",
        "param_bytes",
        "grad_bytes",
        "optim_state_bytes",
        "peak_mem_bytes",
        "achieved_flops_per_sec",
    ):
        assert getattr(record, name) and getattr(record, name) > 0, name
    assert record.train_flops == record.fwd_flops + record.bwd_flops + record.optim_flops
    assert record.sec_per_sequence == pytest.approx(record.sec_per_batch_median / 2)
    assert record.repeats == 3 and record.schema_version == SCHEMA_VERSION
    assert record.torch_version and record.hostname and record.timestamp and record.cpu_model
    # params in fp32; AdamW keeps two moments per parameter (plus a scalar step per tensor)
    assert record.grad_bytes == record.param_bytes
    assert 2 * record.param_bytes <= record.optim_state_bytes < 2 * record.param_bytes + 4096
    # the system-level peak (here the resident high-water mark of the timed steps) and no scaler to skip a step
    assert record.sys_peak_mem_bytes > 0 and record.sys_peak_mem_source.startswith("vmhwm")
    assert record.skipped_steps == 0 and record.cuda_context_bytes is None
    run = json.loads((out / "run.json").read_text())
    assert len(run["step_times_s"]) == 3
    assert run["record"]["sec_per_batch_median"] == pytest.approx(sorted(run["step_times_s"])[1])


@pytest.mark.integration
def test_layers_add_up_and_run_in_forward_order(tiny_profile_run):
    out, _ = tiny_profile_run
    with open(out / "layers.csv") as handle:
        assert tuple(next(csv.reader(handle))) == LAYER_COLUMNS
    layers = read_layers_csv(out / "layers.csv")
    (record,) = read_results_csv(out / "results.csv")
    names = [row.layer for row in layers]
    assert names[:8] == [f"cnn.{i}" for i in range(7)] + ["feature_projection"]
    assert names.index("positional_conv") < names.index("transformer.0") < names.index("quantizer")
    assert sum(row.fwd_flops for row in layers) == record.fwd_flops
    assert sum(row.bwd_flops for row in layers) == record.bwd_flops
    assert all(row.bwd_flops >= 0 for row in layers)
    assert layers[-1].cum_act_mem_bytes == sum(row.act_mem_bytes for row in layers) == record.act_mem_bytes
    assert sum(row.params for row in layers) * 4 == record.param_bytes
    # conv0's input (the waveform) needs no gradient: backward computes only the weight gradient
    assert layers[0].bwd_flops == layers[0].fwd_flops
    assert layers[1].bwd_flops == 2 * layers[1].fwd_flops


def test_activation_bytes_are_exact_on_a_small_module():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 5))
    layers = [LayerSpec("first", "head", ("0",)), LayerSpec("relu", "head", ("1",)), LayerSpec("last", "head", ("2",))]
    tracker = ActivationTracker(model, layers)
    x = torch.randn(2, 4)
    with tracker.track():  # the forward pass only: what it saved is counted when it ends
        loss = model(x).sum()
    loss.backward()
    # Linear(4,3) saves its input: 2 * 4 floats * 4 bytes = 32 (its weight is a parameter: not counted).
    # ReLU saves its output: 2 * 3 * 4 = 24. The last Linear saves its input, which is ReLU's output, the
    # same storage: already counted, so 0 more.
    assert dict(tracker.bytes_by_layer) == {"first": 32, "relu": 24}
    assert tracker.total_bytes == 56


class _DropsABranch(nn.Module):
    """Computes a branch with gradients and drops it (its saved tensors are freed during the forward pass), then
    saves a tensor of the same size, which the allocator tends to put at the freed address."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(64, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.sigmoid(x @ self.weight).sum().item()  # sigmoid saves its output; the graph dies with the branch
        return torch.sigmoid(x @ self.weight + 1)


def test_a_storage_freed_during_the_forward_is_not_counted_and_its_address_is_not_a_duplicate():
    model = _DropsABranch()
    tracker = ActivationTracker(model, [LayerSpec("layer", "head", ("",))])
    x = torch.randn(64, 64, requires_grad=True)
    with tracker.track():
        out = model(x)
    # kept for backward: x (saved by the matmul for the weight's gradient) and sigmoid's output, 64*64*4 bytes each
    assert tracker.total_bytes == 2 * 64 * 64 * 4
    out.sum().backward()


def test_time_statistics_exact():
    stats = time_stats([1.0, 2.0, 3.0, 4.0, 10.0])
    # mean 4; sample variance (9 + 4 + 1 + 0 + 36) / 4 = 12.5; q25 = 2, q75 = 4
    assert stats == pytest.approx({"median": 3.0, "mean": 4.0, "std": 12.5**0.5, "min": 1.0, "max": 10.0, "iqr": 2.0})
    assert quantile([0.0, 10.0], 0.25) == 2.5
    assert time_stats([0.5])["std"] == 0.0


@pytest.mark.integration
def test_unsupported_precision_is_a_record_not_a_crash(monkeypatch):
    import w2vprof.measure.engine as engine

    monkeypatch.setattr(engine, "mixed_precision_problem", lambda device: "autocast unsupported on cpu: test")
    result = profile_configuration(ProfileConfig(model="tiny", batch=1, seconds=1.0, precision="mixed", repeats=1))
    assert result.record.status == "unsupported"
    assert "autocast unsupported" in result.record.error
    assert result.record.sec_per_batch_median is None


@pytest.mark.integration
def test_mixed_precision_on_cpu_runs_in_bfloat16(cpu_native_bf16):
    result = profile_configuration(ProfileConfig(model="tiny", batch=1, seconds=0.5, precision="mixed", repeats=1))
    assert result.record.status == "ok"
    # The (faked) CPU's answer, and the note that bfloat16 is emulated exactly where it is not native.
    assert result.record.bf16_native is cpu_native_bf16
    emulated = "CPU has no native bfloat16: autocast bfloat16 is emulated (often slower than fp32)"
    assert result.record.notes == ("" if cpu_native_bf16 else emulated)
    # autocast keeps bf16 copies of the weights alive for backward: they count as saved tensors
    assert result.record.act_mem_bytes > 0


@pytest.mark.integration
def test_any_failure_while_measuring_is_a_one_line_record_not_a_traceback(monkeypatch):
    import w2vprof.measure.engine as engine

    def refuse_float64(*args, **kwargs):
        raise TypeError("Cannot convert a MPS Tensor to float64 dtype as the MPS framework doesn't support float64.")

    monkeypatch.setattr(engine, "measurement_pass", refuse_float64)
    result = profile_configuration(ProfileConfig(model="tiny", batch=1, seconds=0.5, repeats=1, telemetry=False))
    assert result.record.status == "error"
    assert result.record.error.startswith("TypeError: Cannot convert a MPS Tensor to float64")
    assert result.record.workload == "synthetic" and result.record.utt_sec_mean == 0.5  # what ran before it stays
    assert result.record.sec_per_batch_median is None and result.record.fwd_flops is None and result.layers == []


@pytest.mark.integration
def test_an_out_of_memory_while_measuring_is_an_oom_record(monkeypatch):
    import w2vprof.measure.engine as engine

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")

    monkeypatch.setattr(engine, "timed_steps", out_of_memory)
    result = profile_configuration(ProfileConfig(model="tiny", batch=1, seconds=0.5, repeats=1, telemetry=False))
    assert (result.record.status, result.record.error) == (
        "oom",
        "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    )


def test_bad_input_found_while_measuring_still_raises(tmp_path):
    from w2vprof.errors import BadInput

    with pytest.raises(BadInput):
        profile_configuration(ProfileConfig(model="tiny", batch=1, repeats=1, audio=str(tmp_path / "missing.wav")))


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"precision": "fp8"}, "unknown precision 'fp8'"),
        ({"batch": 0}, "batch must be positive"),
        ({"seconds": float("nan")}, "seconds must be positive"),
        ({"warmup": -1}, "warmup cannot be negative"),
        ({"device": "tpu"}, "device 'tpu' is unknown"),
    ],
)
def test_the_library_names_the_setting_not_a_flag(changes, fragment):
    from w2vprof.errors import BadInput

    with pytest.raises(BadInput, match=fragment) as caught:
        profile_configuration(ProfileConfig(model="tiny", **changes))
    assert "--" not in str(caught.value)


@pytest.mark.integration
def test_a_model_built_ahead_gives_the_same_numbers_and_is_measured_once():
    from w2vprof.measure.engine import build_measured_model

    config = ProfileConfig(model="tiny", batch=2, seconds=0.5, repeats=1, seed=5, device="cpu", telemetry=False)
    built = build_measured_model(config, "cpu")
    torch.rand(1000)  # whatever a caller does with the RNG in between must not change the masks drawn
    ahead = profile_configuration(config, model=built)
    here = profile_configuration(config)
    for name in ("loss", "masked_fraction", "fwd_flops", "bwd_flops", "act_mem_bytes", "optim_state_bytes"):
        assert getattr(ahead.record, name) == getattr(here.record, name), name
    assert [(row.fwd_flops, row.bwd_flops, row.act_mem_bytes) for row in ahead.layers] == [
        (row.fwd_flops, row.bwd_flops, row.act_mem_bytes) for row in here.layers
    ]
    with pytest.raises(ValueError, match="already measured"):
        profile_configuration(config, model=built)
    with pytest.raises(ValueError, match="built for tiny/seed 5"):
        profile_configuration(replace(config, seed=6), model=build_measured_model(config, "cpu"))


@pytest.mark.integration
def test_deterministic_with_seed():
    first = profile_configuration(ProfileConfig(model="tiny", batch=2, seconds=0.5, repeats=1, seed=3))
    second = profile_configuration(ProfileConfig(model="tiny", batch=2, seconds=0.5, repeats=1, seed=3))
    assert first.record.loss == second.record.loss
    assert first.record.act_mem_bytes == second.record.act_mem_bytes


@pytest.mark.integration
@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--batch", "0"], "--batch must be a positive whole number"),
        (["--seconds", "x"], "--seconds must be a positive number"),
        (["--precision", "fp8"], "unknown precision 'fp8'"),
        (["--model", "huge"], "unknown model 'huge'"),
        (["--repeats", "0"], "--repeats must be a positive whole number"),
        (["--device", "tpu"], "--device 'tpu' is unknown"),
    ],
)
def test_profile_bad_input_is_one_line_and_exit_2(tmp_path, args, fragment):
    result = run_cli("profile", "--model", "tiny", "--out", str(tmp_path / "o"), *args)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr


@pytest.mark.integration
def test_profile_out_in_missing_folder(tmp_path):
    result = run_cli("profile", "--model", "tiny", "--out", str(tmp_path / "missing" / "o"))
    assert result.returncode == 2 and "does not exist" in result.stderr


@pytest.mark.integration
def test_cuda_request_without_cuda_is_bad_input(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_cli("profile", "--model", "tiny", "--device", "cuda", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "no CUDA device" in result.stderr


def _r_squared(xs, ys):
    from w2vprof.analysis.fit import linear_fit

    return linear_fit(xs, ys)[2]


@pytest.mark.integration
def test_activation_memory_and_flops_grow_linearly_with_length():
    seconds = [1.0, 2.0, 4.0, 6.0, 8.0]
    records = [
        profile_configuration(ProfileConfig(model="tiny", batch=1, seconds=s, repeats=1)).record for s in seconds
    ]
    assert _r_squared(seconds, [r.act_mem_bytes for r in records]) > 0.99
    assert _r_squared(seconds, [r.train_flops for r in records]) > 0.99


@pytest.mark.integration
def test_profile_prints_its_record_through_the_table_renderer(tiny_profile_run):
    from w2vprof.report.run_views import profile_table

    out, result = tiny_profile_run
    (record,) = read_results_csv(out / "results.csv")
    table = profile_table(record)
    values = dict(table.rows)
    assert table.title == f"tiny | batch 2 | 1 s | fp32 | {record.device}"
    assert values["status"] == "ok" and values["seconds per batch (median)"] == f"{record.sec_per_batch_median:.3f} s"
    assert values["activations saved for backward"] == f"{record.act_mem_bytes / 1e6:.1f} MB"
    assert "recipe" not in values  # the default recipe has no rows of its own
    # What `profile` printed is that table (drawn by report.render, one line per row when piped) and its notes.
    for measure, value in table.rows:
        assert any(measure.strip() in line and value in line for line in result.stdout.splitlines()), measure
    assert "Largest activation memory: " in result.stdout and "per-layer rows in layers.csv" in result.stdout


@pytest.mark.integration
def test_the_profile_table_shows_a_recipe_and_marks_what_was_not_measured(tiny_profile_run):
    from w2vprof.report.run_views import profile_notes, profile_table

    out, _ = tiny_profile_run
    (record,) = read_results_csv(out / "results.csv")
    changed = replace(
        record, recipe="checkpointing=all", recompute_flops=2.5e9, trainable_params=1234567, peak_mem_bytes=None
    )
    values = dict(profile_table(changed).rows)
    assert values["recipe"] == "checkpointing=all" and values["recomputed forward (checkpointing)"] == "2.5 GFLOP"
    assert values["trainable parameters"] == "1,234,567"
    assert values[f"peak memory ({record.peak_mem_source})"] == "-"
    assert profile_notes(record, []) == []
    assert "objective" not in values  # pretraining, the default, has no row (as the default recipe)
    rows = profile_table(replace(record, objective="ctc")).rows
    assert rows[:2] == [["status", "ok"], ["objective", "ctc"]]  # what the step trained, under its status
