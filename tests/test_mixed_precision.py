"""Mixed precision in the measurement engine (issue 16): the `unsupported` probe runs a whole small training step
(autocast, backward, gradient scaler, AdamW), the scaler starts at fairseq's 128, warm-up runs on while the loss
scale falls, skipped steps are counted, and no timed step allocates the optimizer's state.

The float16 + gradient scaler path is exercised on this CPU by giving the CPU CUDA's recipe
(`MIXED_PRECISION["cpu"]`): torch's CPU autocast does float16 and torch.amp.GradScaler("cpu") scales, so a loss
scale that is too high overflows for real. Where exact counts matter, a stub scaler skips the calls it is told to.
"""

from __future__ import annotations

import pytest
import torch

import w2vprof.compat as compat
import w2vprof.measure.engine as engine
import w2vprof.measure.step as step_module
from w2vprof.measure.engine import ProfileConfig, profile_configuration
from w2vprof.measure.timing import MAX_EXTRA_WARMUP_STEPS

MPS_FLOAT64 = (
    "Cannot convert a MPS Tensor to float64 dtype as the MPS framework doesn't support float64. "
    "Please use float32 instead."
)


def _mixed(**changes) -> ProfileConfig:
    settings = dict(model="tiny", batch=2, seconds=0.5, precision="mixed", device="cpu", repeats=3, telemetry=False)
    settings.update(changes)
    return ProfileConfig(**settings)


@pytest.fixture
def cpu_float16_scaled(monkeypatch):
    """The CPU trains mixed precision as CUDA does: float16 autocast and a gradient scaler."""
    found = compat.major_minor(torch.__version__)
    if found is None or found < (2, 3):  # CPU autocast is bfloat16 only and torch.amp.GradScaler is absent before 2.3
        pytest.skip(
            f"float16 training on the CPU (a stand-in for CUDA's recipe) needs torch 2.3+; this is {torch.__version__}"
        )
    monkeypatch.setitem(step_module.MIXED_PRECISION, "cpu", step_module.MixedPrecision("float16", scaled=True))


def _adamw_state_bytes(model) -> int:
    """Two float32 moments per parameter element and a float32 step count per parameter tensor."""
    params = [p for p in model.parameters() if p.requires_grad]
    return 8 * sum(p.numel() for p in params) + 4 * len(params)


def _tiny_state_bytes() -> int:
    from w2vprof.models import build_model

    return _adamw_state_bytes(build_model("tiny"))


class StubScaler:
    """A gradient scaler that skips the optimizer step on the calls listed in `skip_calls` (0-based) and halves
    its scale after each, as torch's does after an overflow; every other call really steps."""

    def __init__(self, skip_calls: set[int], init_scale: float = 128.0) -> None:
        self.skip_calls = skip_calls
        self.scale_value = init_scale
        self.calls = 0
        self.skipped_last = False

    def scale(self, loss):
        return loss

    def step(self, optimizer) -> None:
        self.skipped_last = self.calls in self.skip_calls
        self.calls += 1
        if not self.skipped_last:
            optimizer.step()

    def update(self) -> None:
        if self.skipped_last:
            self.scale_value /= 2

    def get_scale(self) -> float:
        return self.scale_value


# -- 1. the probe: `unsupported` with the reason, not `error` -------------------------------------------------
@pytest.mark.integration
def test_a_torch_without_a_gradient_scaler_for_the_device_is_unsupported(cpu_float16_scaled, monkeypatch):
    """torch.amp.GradScaler(device) is torch 2.3+: before it, a device without torch.cuda.amp's scaler has none."""
    monkeypatch.delattr(torch.amp, "GradScaler")
    result = profile_configuration(_mixed())
    assert result.record.status == "unsupported", result.record.error
    assert "no gradient scaler for cpu" in result.record.error
    assert result.record.sec_per_batch_median is None


@pytest.mark.integration
def test_a_gradient_scaler_that_cannot_be_made_is_unsupported(cpu_float16_scaled, monkeypatch):
    def no_scaler(*args, **kwargs):
        raise RuntimeError("GradScaler is not supported on this device type")

    monkeypatch.setattr(torch.amp, "GradScaler", no_scaler)
    result = profile_configuration(_mixed())
    assert result.record.status == "unsupported"
    assert result.record.error.endswith("RuntimeError: GradScaler is not supported on this device type")


@pytest.mark.integration
def test_the_mps_float64_failure_of_the_scaler_step_is_unsupported(cpu_float16_scaled, monkeypatch):
    """pytorch#142397: on MPS with torch 2.5-2.7, GradScaler.step converts to float64, which MPS lacks."""

    class Float64Scaler(StubScaler):
        def step(self, optimizer) -> None:
            raise TypeError(MPS_FLOAT64)

    monkeypatch.setattr(compat, "grad_scaler", lambda device, init_scale=2.0**16: Float64Scaler(set()))
    result = profile_configuration(_mixed())
    assert result.record.status == "unsupported"
    assert result.record.error == f"mixed precision cannot train on cpu: TypeError: {MPS_FLOAT64}"


def test_the_probe_passes_where_mixed_precision_trains():
    assert engine.mixed_precision_problem("cpu") is None  # bfloat16 on this CPU, no scaler


# -- 2. the loss scale, the warm-up and the optimizer's state -----------------------------------------------------
@pytest.mark.integration
def test_the_scaler_starts_at_fairseqs_128(cpu_float16_scaled):
    from w2vprof.measure.step import TrainingStep
    from w2vprof.models import build_model

    step = TrainingStep.create(build_model("tiny"), "cpu", "mixed")
    assert step.scaler is not None and step.loss_scale() == 128.0
    assert TrainingStep.create(build_model("tiny"), "cpu", "fp32").loss_scale() is None


@pytest.mark.integration
def test_warm_up_runs_until_the_scale_stops_falling_and_skipped_steps_are_counted(monkeypatch):
    """Calls 0-2 overflow: the measurement pass (0) and two warm-up steps; 3 is real; 6 is the last timed step."""
    monkeypatch.setitem(step_module.MIXED_PRECISION, "cpu", step_module.MixedPrecision("bfloat16", scaled=True))
    scalers: list[StubScaler] = []

    def make_scaler(device, init_scale=2.0**16):
        scalers.append(StubScaler({0, 1, 2, 6}, init_scale))
        return scalers[-1]

    at_timing = []  # (parameters with optimizer state, scaler calls so far) when the timed steps start

    def timed_steps(step, *args, **kwargs):
        at_timing.append((len(step.optimizer.state), step.scaler.calls))
        return original_timed_steps(step, *args, **kwargs)

    original_timed_steps = engine.timed_steps
    monkeypatch.setattr(compat, "grad_scaler", make_scaler)
    monkeypatch.setattr(engine, "timed_steps", timed_steps)
    record = profile_configuration(_mixed(warmup=1)).record
    assert record.status == "ok", record.error
    ((state_entries, calls_before_timing),) = at_timing
    assert calls_before_timing == 1 + 3  # the measurement pass and 3 extra warm-up steps (the last one real)
    assert state_entries > 0  # the first real update, which allocates AdamW's state, happened before timing
    assert len(scalers) == 2 and scalers[1].calls >= 4 + 3  # the first scaler was the probe's
    assert record.skipped_steps == 1
    assert "warm-up ran 3 extra step(s) until the loss scale stopped falling" in record.notes
    assert record.optim_state_bytes == _tiny_state_bytes()


@pytest.mark.integration
def test_warm_up_is_bounded_and_the_state_is_allocated_when_every_step_overflows(monkeypatch):
    monkeypatch.setitem(step_module.MIXED_PRECISION, "cpu", step_module.MixedPrecision("bfloat16", scaled=True))
    monkeypatch.setattr(compat, "grad_scaler", lambda device, init_scale=2.0**16: StubScaler(set(range(100))))
    record = profile_configuration(_mixed(warmup=2, repeats=2)).record
    assert record.status == "ok", record.error
    assert record.optim_state_bytes == _tiny_state_bytes()  # never 0 for AdamW
    assert record.skipped_steps == 2
    assert f"still falling after {MAX_EXTRA_WARMUP_STEPS} extra warm-up step(s)" in record.notes
    assert "optimizer state was allocated before timing" in record.notes


@pytest.mark.integration
def test_a_real_float16_overflow_on_this_cpu(cpu_float16_scaled, monkeypatch):
    """A loss scale of 2**40 overflows float16 for real: the measurement pass's update is skipped (AdamW's state
    would be 0 bytes), warm-up stops at its bound, the state is there before timing, the skipped steps counted."""
    monkeypatch.setattr(step_module, "LOSS_SCALE_INIT", 2.0**40)
    record = profile_configuration(_mixed(repeats=2)).record
    assert record.status == "ok", record.error
    assert record.optim_state_bytes == _tiny_state_bytes()
    assert record.skipped_steps == 2  # 2**40 / 2**11 still overflows
    assert "still falling after 10 extra warm-up step(s)" in record.notes


@pytest.mark.integration
def test_at_128_the_tiny_model_does_not_overflow(cpu_float16_scaled, cpu_native_bf16):
    record = profile_configuration(_mixed()).record
    assert record.status == "ok", record.error
    # float16 ran, not bfloat16: no emulated-bfloat16 note whatever the CPU's flags say
    assert record.skipped_steps == 0 and record.notes == ""
    assert record.bf16_native is cpu_native_bf16
    assert record.optim_state_bytes == _tiny_state_bytes()


@pytest.mark.integration
def test_fp32_and_bfloat16_rows_record_no_skipped_steps(cpu_native_bf16):
    record = profile_configuration(_mixed(precision="fp32", repeats=1)).record
    assert record.skipped_steps == 0 and record.optim_state_bytes == _tiny_state_bytes()
    assert record.notes == ""  # fp32: no precision caveat on any CPU


def test_the_precision_note_names_the_dtype_that_ran(cpu_native_bf16, monkeypatch):
    from w2vprof.measure.step import emulated_precision_note

    emulated = "CPU has no native bfloat16: autocast bfloat16 is emulated (often slower than fp32)"
    assert emulated_precision_note("cpu", cpu_native_bf16) == ("" if cpu_native_bf16 else emulated)
    assert emulated_precision_note("cuda", cpu_native_bf16) == ""  # float16 on the GPU: the CPU's flags are moot
    monkeypatch.setitem(step_module.MIXED_PRECISION, "cpu", step_module.MixedPrecision("float16", scaled=True))
    assert emulated_precision_note("cpu", cpu_native_bf16) == ""


@pytest.mark.integration
def test_allocating_adamw_state_ahead_changes_nothing_that_follows():
    from w2vprof.measure.step import allocate_optimizer_state

    torch.manual_seed(0)
    ahead, lazy = torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)
    lazy.load_state_dict(ahead.state_dict())
    optimizers = [torch.optim.AdamW(m.parameters(), lr=0.1, weight_decay=0.01) for m in (ahead, lazy)]
    assert allocate_optimizer_state(optimizers[0]) == 2 and allocate_optimizer_state(optimizers[0]) == 0
    x = torch.randn(3, 8)
    for _ in range(3):
        for model, optimizer in zip((ahead, lazy), optimizers, strict=True):
            model(x).pow(2).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
    assert torch.equal(ahead.weight, lazy.weight) and torch.equal(ahead.bias, lazy.bias)
    for p_ahead, p_lazy in zip(ahead.parameters(), lazy.parameters(), strict=True):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(optimizers[0].state[p_ahead][key], optimizers[1].state[p_lazy][key]), key
    assert allocate_optimizer_state(torch.optim.SGD(lazy.parameters(), lr=0.1)) == 0  # AdamW only
