"""The training step exists once (w2vprof.measure.step.TrainingStep.run): its hooks see each phase in order, and a
model family other than wav2vec 2.0 goes through the same step, counting pass, layer timing and trace.

The tests that train are marked integration here (the project's rule), not in conftest.INTEGRATION."""

from __future__ import annotations

import itertools
import json
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import pytest
import torch
from torch import nn

from w2vprof.measure.counting import layer_rows, measurement_pass
from w2vprof.measure.layer_timing import OTHER, time_layers
from w2vprof.measure.step import StepHooks, TrainingStep, family_of_model
from w2vprof.measure.trace import trace_step
from w2vprof.models import CTC, OBJECTIVE, LayerSpec, LossOutput, ModelFamily, ModelOptions, get_family
from w2vprof.workload import Batch

FRAME = 8  # samples per frame of the toy model
HIDDEN, OUT = 16, 4


class Toy(nn.Module):
    """Frames of 8 samples -> Linear(8, 16) -> ReLU -> Linear(16, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(FRAME, HIDDEN)
        self.head = nn.Linear(HIDDEN, OUT)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        frames = waveforms.reshape(waveforms.shape[0], -1, FRAME)
        return self.head(torch.relu(self.encoder(frames)))


class ToyFamily(ModelFamily):
    """A family as a user writes one (w2vprof.models.family): builder, targets, loss, layer map."""

    name = "toy"
    objectives = (CTC,)

    def build(self, objective: str = CTC, options: Optional[ModelOptions] = None) -> nn.Module:
        return Toy()

    def make_targets(self, batch: Batch, model: nn.Module, generator: Optional[torch.Generator] = None) -> Any:
        return torch.zeros(batch.size, batch.waveforms.shape[1] // FRAME, OUT)

    def loss(self, model: nn.Module, batch: Batch, targets: Any) -> LossOutput:
        prediction = model(batch.waveforms)
        return LossOutput((prediction - targets).pow(2).mean(), output=prediction)

    def layers(self, model: nn.Module) -> list[LayerSpec]:
        return [
            LayerSpec("encoder", "transformer", ("encoder",)),
            LayerSpec("head", "head", ("head",)),
            LayerSpec(OBJECTIVE, "loss", ()),
        ]


@pytest.fixture
def toy_step() -> tuple[TrainingStep, list[LayerSpec], Batch]:
    torch.manual_seed(0)
    family = ToyFamily()
    model = family.build().train()
    batch = Batch(torch.randn(2, 4 * FRAME), torch.full((2,), 4 * FRAME))
    return TrainingStep.create(model, "cpu", "fp32", family=family), family.layers(model), batch


class Recorder(StepHooks):
    def __init__(self) -> None:
        self.events: list[str] = []

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        self.events.append(f"{name} {{")
        yield
        self.events.append(f"}} {name}")

    def step(self, batch: Batch) -> Any:
        return self._phase(f"step {batch.size}")

    def forward(self, batch: Batch) -> Any:
        return self._phase(f"forward {batch.size}")

    def backward(self, forward: Any) -> Any:
        assert forward.loss.requires_grad  # the loss the backward starts from, not yet scaled or shared
        return self._phase("backward")

    def update(self) -> Any:
        return self._phase("update")


@pytest.mark.integration  # it trains (a toy of 200 parameters: well under a second)
def test_each_phase_runs_inside_its_hook_in_order_and_micro_batches_share_one_update(toy_step):
    step, _, batch = toy_step
    recorder = Recorder()
    before = [p.detach().clone() for p in step.model.parameters()]
    step.accumulate = 2
    step.run(batch, recorder)
    micro = ["forward 1 {", "} forward 1", "backward {", "} backward"]
    assert recorder.events == ["step 2 {", *micro, *micro, "update {", "} update", "} step 2"]
    assert all(not torch.equal(a, b) for a, b in zip(before, step.model.parameters()))  # it trained


@pytest.mark.integration  # it trains (a toy of 200 parameters: well under a second)
def test_a_family_other_than_wav2vec2_is_counted_by_the_same_pass(toy_step):
    step, layers, batch = toy_step
    counts = measurement_pass(step, layers, batch)
    rows = {row.layer: row for row in layer_rows(step.model, layers, counts)}
    frames = batch.size * batch.waveforms.shape[1] // FRAME
    encoder, head = 2 * frames * FRAME * HIDDEN, 2 * frames * HIDDEN * OUT  # 2 FLOPs per multiply-add
    assert (rows["encoder"].fwd_flops, rows["head"].fwd_flops, rows[OBJECTIVE].fwd_flops) == (encoder, head, 0)
    # backward: the weight's gradient for both, the input's gradient for the head only (the audio needs none)
    assert (rows["encoder"].bwd_flops, rows["head"].bwd_flops) == (encoder, 2 * head)
    assert counts.fwd_flops == encoder + head and counts.bwd_flops == encoder + 2 * head
    assert counts.masked_fraction is None  # its output says nothing of masking
    params = FRAME * HIDDEN + HIDDEN + HIDDEN * OUT + OUT
    assert counts.param_count == sum(row.params for row in rows.values()) == params
    assert counts.act_by_layer["encoder"] > 0 and counts.optim_state_bytes > 0


@pytest.mark.integration  # it trains (a toy of 200 parameters: well under a second)
def test_a_family_other_than_wav2vec2_is_timed_per_layer_and_traced(toy_step, tmp_path):
    step, layers, batch = toy_step
    ticks = itertools.count()
    timing = time_layers(step, layers, [batch], "cpu", 2, clock=lambda: float(next(ticks)))
    assert [row.layer for row in timing.rows] == ["encoder", "head", OBJECTIVE, OTHER]
    assert timing.row("encoder").fwd_sec and timing.row("head").bwd_sec
    trace = json.loads(trace_step(step, batch, layers, tmp_path / "toy.json").read_text())
    names = {event.get("name") for event in trace["traceEvents"]}
    assert {"encoder", "head", "forward", "backward", "optimizer step"} <= names


def test_a_built_in_model_finds_its_family_and_any_other_model_is_given_one():
    from w2vprof.models import build_model

    assert family_of_model(build_model("tiny")) is get_family("tiny")
    with pytest.raises(ValueError, match="a Toy is no built-in model: pass its model family"):
        TrainingStep.create(Toy(), "cpu", "fp32")
