"""Seconds per layer (w2vprof.measure.layer_timing): time lands on the layer and the direction that spent it.

The tiny model gets one layer made slow on purpose: a wrapper at that layer's module path sleeps after the
layer's forward, or passes its output through an autograd Function that sleeps in backward. The sleeps advance a
FAKE clock that nothing else moves, so every expected number is exact and no assertion depends on the machine's
speed (one test with real sleeps checks only lower bounds).
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable

import pytest
import torch
from torch import nn

from w2vprof.measure.layer_timing import OTHER, LayerTime, LayerTiming, time_layers, with_flop_rates
from w2vprof.models.layers import OBJECTIVE
from w2vprof.models.layers import wav2vec2_layers as model_layers


class FakeClock:
    """Seconds that pass only when something sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class SleepInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sleep: Callable[[float], None], seconds: float) -> torch.Tensor:
        ctx.sleep, ctx.seconds = sleep, seconds
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        ctx.sleep(ctx.seconds)
        return grad, None, None


class Slowed(nn.Module):
    """A layer's module, slowed: `forward_sec` after its forward, `backward_sec` in the backward of its output."""

    def __init__(
        self, inner: nn.Module, sleep: Callable[[float], None], forward_sec: float = 0.0, backward_sec: float = 0.0
    ) -> None:
        super().__init__()
        self.inner, self.sleep, self.forward_sec, self.backward_sec = inner, sleep, forward_sec, backward_sec

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.inner(*args, **kwargs)
        self.sleep(self.forward_sec)
        first = out[0] if isinstance(out, tuple) else out
        if self.backward_sec:
            first = SleepInBackward.apply(first, self.sleep, self.backward_sec)
        return (first, *out[1:]) if isinstance(out, tuple) else first


def slow_down(model: nn.Module, path: str, **seconds: Any) -> str:
    """Replace the module at `path` by a Slowed one; returns the name of the layer it belongs to."""
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path)
    setattr(parent, child, Slowed(getattr(parent, child), **seconds))
    return next(layer.name for layer in model_layers(model) if path in layer.modules)


def charged_rows(timing: LayerTiming) -> dict[str, tuple[float, float]]:
    return {row.layer: (row.fwd_sec, row.bwd_sec) for row in timing.rows if row.layer != OTHER}


@pytest.mark.integration
@pytest.mark.parametrize(
    "slow_forward, slow_backward",
    [
        ("transformer.layers.1", "feature_extractor.conv_layers.2"),
        ("quantizer", "transformer.layers.0"),  # the quantizer is a branch beside the transformer
        ("feature_projection", "quantizer"),  # a backward sleep inside the branch's own graph
    ],
)
def test_time_lands_on_the_slow_layer_and_direction(tiny_training_step, two_tiny_batches, slow_forward, slow_backward):
    clock = FakeClock()
    fwd_layer = slow_down(tiny_training_step.model, slow_forward, sleep=clock.sleep, forward_sec=1.0)
    bwd_layer = slow_down(tiny_training_step.model, slow_backward, sleep=clock.sleep, backward_sec=2.0)
    timing = time_layers(
        tiny_training_step, model_layers(tiny_training_step.model), two_tiny_batches, "cpu", repeats=3, clock=clock
    )

    expected = {row: (0.0, 0.0) for row in charged_rows(timing)}
    expected[fwd_layer] = (1.0, 0.0)
    expected[bwd_layer] = (0.0, 2.0)
    assert charged_rows(timing) == expected
    assert timing.step_sec == 3.0
    assert timing.row(OTHER).sec == 0.0
    assert timing.row(fwd_layer).time_share == pytest.approx(1 / 3)
    assert timing.row(bwd_layer).time_share == pytest.approx(2 / 3)
    assert timing.repeats == 3 and timing.samples[f"{fwd_layer}/fwd"] == [1.0, 1.0, 1.0]


@pytest.mark.integration
def test_rows_follow_the_layers_and_add_up_to_the_step(tiny_training_step, two_tiny_batches):
    clock = FakeClock()
    slow_down(
        tiny_training_step.model,
        "feature_extractor.conv_layers.0",
        sleep=clock.sleep,
        forward_sec=0.25,
        backward_sec=0.5,
    )
    tiny_training_step.optimizer.register_step_pre_hook(lambda optimizer, args, kwargs: clock.sleep(4.0))
    layers = model_layers(tiny_training_step.model)
    timing = time_layers(tiny_training_step, layers, two_tiny_batches, "cpu", repeats=2, clock=clock)

    assert [row.layer for row in timing.rows] == [layer.name for layer in layers] + [OTHER]
    assert timing.row("cnn.0").fwd_sec == 0.25 and timing.row("cnn.0").bwd_sec == 0.5
    assert timing.row(OTHER).sec == 4.0  # the optimizer update is `other`
    assert timing.row(OTHER).fwd_sec is None and timing.row(OTHER).bwd_sec is None
    assert sum(row.sec for row in timing.rows) == timing.step_sec == 4.75
    assert sum(row.time_share for row in timing.rows) == pytest.approx(1.0)


@pytest.mark.integration
def test_each_layer_row_is_its_own_median_and_other_completes_the_median_step(tiny_training_step, two_tiny_batches):
    """Repeat 1 has cnn.0's forward disturbed, repeat 2 transformer.0's; the optimizer takes 4 s each time. Each
    layer row's median ignores its one outlier; `other` is the median step minus the layer rows, so the rows add up
    to a step as measured (here the disturbed median step: the disturbance shows in `other`)."""
    clock = FakeClock()

    def scheduled(seconds: list[float]) -> Callable[[float], None]:
        remaining = iter(seconds)
        return lambda _: clock.sleep(next(remaining))

    slow_down(tiny_training_step.model, "feature_extractor.conv_layers.0", sleep=scheduled([1.0, 0.0, 0.0]))
    slow_down(tiny_training_step.model, "transformer.layers.0", sleep=scheduled([0.0, 1.0, 0.0]))
    tiny_training_step.optimizer.register_step_pre_hook(lambda optimizer, args, kwargs: clock.sleep(4.0))
    timing = time_layers(
        tiny_training_step, model_layers(tiny_training_step.model), two_tiny_batches, "cpu", repeats=3, clock=clock
    )

    assert timing.samples["step"] == [5.0, 5.0, 4.0] and timing.median_step_sec == 5.0
    assert timing.samples["cnn.0/fwd"] == [1.0, 0.0, 0.0] and timing.row("cnn.0").fwd_sec == 0.0
    assert timing.row("transformer.0").fwd_sec == 0.0
    assert timing.samples[OTHER] == [4.0, 4.0, 4.0] and timing.row(OTHER).sec == 5.0
    assert sum(row.sec for row in timing.rows) == timing.step_sec == timing.median_step_sec == 5.0


@pytest.mark.integration
def test_other_is_the_median_step_minus_the_layer_rows(tiny_training_step, two_tiny_batches):
    """Three steps of 3, 4 and 6 s: cnn.0's forward takes 1, 2, 1 s and the optimizer the rest (2, 2, 5 s). The
    median step is 4 s, cnn.0's row 1 s, so `other` is 3 s (the per-repeat `other` has a median of 2 s)."""
    clock = FakeClock()
    forward = iter([1.0, 2.0, 1.0])
    update = iter([2.0, 2.0, 5.0])
    slow_down(tiny_training_step.model, "feature_extractor.conv_layers.0", sleep=lambda _: clock.sleep(next(forward)))
    tiny_training_step.optimizer.register_step_pre_hook(lambda optimizer, args, kwargs: clock.sleep(next(update)))
    timing = time_layers(
        tiny_training_step, model_layers(tiny_training_step.model), two_tiny_batches, "cpu", repeats=3, clock=clock
    )

    assert timing.samples["step"] == [3.0, 4.0, 6.0] and timing.samples[OTHER] == [2.0, 2.0, 5.0]
    assert timing.row("cnn.0").sec == 1.0 and timing.row(OTHER).sec == 3.0
    assert timing.step_sec == 4.0
    assert timing.row(OTHER).time_share == pytest.approx(0.75)


@pytest.mark.integration
def test_layer_rows_that_add_up_to_more_than_the_median_step_leave_other_at_what_the_repeats_left(
    tiny_training_step, two_tiny_batches, tmp_path
):
    """Found by a loaded run: cnn.0's forward takes 2, 2, 0 s and transformer.0's 0, 2, 2 s, so the steps take 2, 4
    and 2 s and the optimizer nothing. The layer medians (2 + 2 s) pass the median step (2 s): subtracting gave
    `other` -2 s, a row w2vprof's own layers.csv reader refuses. `other` is then the per-repeat `other`'s median."""
    from w2vprof.measure.diagnostics import rows_with_times
    from w2vprof.records import LAYER_COLUMNS, LayerRecord, read_layers_csv, rows_to_csv_text

    clock = FakeClock()
    cnn = iter([2.0, 2.0, 0.0])
    transformer = iter([0.0, 2.0, 2.0])
    slow_down(tiny_training_step.model, "feature_extractor.conv_layers.0", sleep=lambda _: clock.sleep(next(cnn)))
    slow_down(tiny_training_step.model, "transformer.layers.0", sleep=lambda _: clock.sleep(next(transformer)))
    timing = time_layers(
        tiny_training_step, model_layers(tiny_training_step.model), two_tiny_batches, "cpu", repeats=3, clock=clock
    )

    assert timing.samples["step"] == [2.0, 4.0, 2.0] and timing.median_step_sec == 2.0
    assert timing.row("cnn.0").sec == timing.row("transformer.0").sec == 2.0
    assert timing.row(OTHER).sec == 0.0 and timing.step_sec == 4.0
    assert sum(row.time_share for row in timing.rows) == pytest.approx(1.0)
    names = [row.layer for row in timing.rows if row.layer != OTHER]
    rows = rows_with_times([LayerRecord(layer=name, kind="layer", act_mem_bytes=0) for name in names], timing)
    path = tmp_path / "layers.csv"
    path.write_text(rows_to_csv_text(rows, LAYER_COLUMNS))
    assert [row.sec for row in read_layers_csv(path)][-1] == 0.0  # readable: nothing negative


@pytest.mark.integration
def test_before_each_runs_before_every_instrumented_step_off_its_clock(tiny_training_step, two_tiny_batches):
    clock = FakeClock()
    seen = []

    def bare_step(batch: Any) -> None:  # what a caller comparing with bare steps would time here
        seen.append(batch)
        clock.sleep(10.0)

    slow_down(tiny_training_step.model, "transformer.layers.1", sleep=clock.sleep, forward_sec=0.5)
    timing = time_layers(
        tiny_training_step,
        model_layers(tiny_training_step.model),
        two_tiny_batches,
        "cpu",
        repeats=3,
        clock=clock,
        before_each=bare_step,
    )
    assert seen == [two_tiny_batches[0], two_tiny_batches[1], two_tiny_batches[0]]
    assert timing.samples["step"] == [0.5, 0.5, 0.5] and timing.samples["wall"] == [0.5, 0.5, 0.5]


@pytest.mark.integration
def test_the_garbage_collector_is_off_during_an_instrumented_step_and_back_on_after(
    tiny_training_step, two_tiny_batches
):
    """A bare step leaves nothing to collect; the instrumented one makes thousands of Python objects, whose
    collections would land inside the step."""
    states = []
    tiny_training_step.model.final_proj.register_forward_hook(
        lambda module, args, output: states.append(gc.isenabled())
    )
    assert gc.isenabled()
    time_layers(tiny_training_step, model_layers(tiny_training_step.model), two_tiny_batches, "cpu", repeats=2)
    assert states == [False, False] and gc.isenabled()
    gc.disable()
    try:  # a caller that turned it off keeps it off
        time_layers(tiny_training_step, model_layers(tiny_training_step.model), two_tiny_batches, "cpu", repeats=1)
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.integration
def test_work_outside_every_layer_is_the_objective_row(tiny_training_step, two_tiny_batches, monkeypatch):
    """Masking runs in the model's own forward, outside every layer's modules."""
    import w2vprof.models.pretraining as pretraining

    clock = FakeClock()
    real_mask = pretraining.compute_span_mask

    def slow_mask(*args: Any, **kwargs: Any) -> Any:
        clock.sleep(0.125)
        return real_mask(*args, **kwargs)

    monkeypatch.setattr(pretraining, "compute_span_mask", slow_mask)
    timing = time_layers(
        tiny_training_step, model_layers(tiny_training_step.model), two_tiny_batches, "cpu", repeats=1, clock=clock
    )
    assert timing.row(OBJECTIVE).fwd_sec == 0.125
    assert sum(row.sec for row in timing.rows if row.layer != OBJECTIVE) == 0.0


@pytest.mark.integration
def test_real_sleeps_land_on_their_layer(tiny_training_step, two_tiny_batches):
    """With the real clock: only lower bounds, which no machine speed can break."""
    transformer = slow_down(tiny_training_step.model, "transformer.layers.0", sleep=time.sleep, forward_sec=0.05)
    cnn = slow_down(tiny_training_step.model, "feature_extractor.conv_layers.3", sleep=time.sleep, backward_sec=0.05)
    timing = time_layers(tiny_training_step, model_layers(tiny_training_step.model), two_tiny_batches, "cpu", repeats=1)
    assert timing.row(transformer).fwd_sec >= 0.05
    assert timing.row(cnn).bwd_sec >= 0.05
    assert timing.wall_sec >= timing.step_sec >= 0.1
    assert sum(row.sec for row in timing.rows) == pytest.approx(timing.step_sec)


def no_hooks_left(model: nn.Module) -> bool:
    return not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


@pytest.mark.integration
def test_hooks_are_removed_and_nothing_is_stored_on_the_model(tiny_training_step, two_tiny_batches):
    model = tiny_training_step.model
    attributes = set(vars(model))
    time_layers(tiny_training_step, model_layers(model), two_tiny_batches, "cpu", repeats=1)
    assert no_hooks_left(model)
    assert set(vars(model)) == attributes
    tiny_training_step(two_tiny_batches[0])  # the model still trains as a plain step


@pytest.mark.integration
def test_hooks_are_removed_when_the_step_fails(tiny_training_step, two_tiny_batches):
    def broken(module: nn.Module, args: Any, output: Any) -> None:
        raise RuntimeError("layer failed")

    handle = tiny_training_step.model.final_proj.register_forward_hook(broken)
    with pytest.raises(RuntimeError, match="layer failed"):
        time_layers(tiny_training_step, model_layers(tiny_training_step.model), two_tiny_batches, "cpu", repeats=1)
    handle.remove()
    assert no_hooks_left(tiny_training_step.model)
    assert gc.isenabled()  # turned back on by the failed step


@pytest.mark.integration
@pytest.mark.parametrize(
    "parameter, layer",
    [("mask_embedding", "mask_embedding"), ("feature_extractor.conv_layers.0.conv.weight", "cnn.0")],
)
def test_gradient_accumulation_lands_on_the_parameters_layer(tiny_training_step, two_tiny_batches, parameter, layer):
    """A parameter's gradient accumulation is its layer's backward work; mask_embedding has no module (the model
    holds it), so the accumulation is its row's only work."""
    clock = FakeClock()
    tiny_training_step.model.get_parameter(parameter).register_post_accumulate_grad_hook(lambda p: clock.sleep(0.5))
    timing = time_layers(
        tiny_training_step, model_layers(tiny_training_step.model), two_tiny_batches, "cpu", repeats=1, clock=clock
    )
    assert timing.row(layer).bwd_sec == 0.5
    assert timing.step_sec == 0.5


def test_flop_rates_are_flops_over_seconds():
    timing = LayerTiming(
        rows=[
            LayerTime("cnn.0", 0.5, 2.0, 2.5, 0.5),
            LayerTime("transformer.0", 0.25, 0.0, 0.25, 0.05),
            LayerTime(OTHER, None, None, 2.25, 0.45),
        ],
        median_step_sec=5.0,
        wall_sec=5.5,
        repeats=1,
    )
    rated = with_flop_rates(timing, {"cnn.0": 100, "transformer.0": 50}, {"cnn.0": 300, "transformer.0": 80})
    assert [(r.fwd_flops_per_sec, r.bwd_flops_per_sec) for r in rated.rows] == [
        (200.0, 150.0),
        (200.0, None),
        (None, None),
    ]
    assert timing.rows[0].fwd_flops_per_sec is None  # the original is unchanged


@pytest.mark.integration
def test_at_least_one_repeat_and_one_batch(tiny_training_step, two_tiny_batches):
    with pytest.raises(ValueError, match="at least one repeat"):
        time_layers(tiny_training_step, model_layers(tiny_training_step.model), two_tiny_batches, "cpu", repeats=0)
    with pytest.raises(ValueError, match="at least one repeat"):
        time_layers(tiny_training_step, model_layers(tiny_training_step.model), [], "cpu", repeats=1)
