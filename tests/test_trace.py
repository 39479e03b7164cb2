"""One training step as a Chrome trace (w2vprof.measure.trace): valid JSON naming every layer of layers.csv, each
layer's ranges in the forward and in the backward phase."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import new_tiny_training_step
from w2vprof.files import DiskWriteError
from w2vprof.measure.step import TrainingStep
from w2vprof.measure.trace import PHASES, trace_step
from w2vprof.models.layers import wav2vec2_layers as model_layers
from w2vprof.workload import make_workload

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def traced(tmp_path_factory) -> tuple[TrainingStep, Any, list[dict[str, Any]]]:
    step = new_tiny_training_step()
    batch = next(make_workload(0.5).batches(2, 0))
    path = tmp_path_factory.mktemp("trace") / "step.json"
    assert trace_step(step, batch, model_layers(step.model), path) == path
    return step, batch, json.loads(path.read_text())["traceEvents"]


def ranges_named(events: list[dict[str, Any]], name: str) -> list[tuple[float, float]]:
    return [(e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == name and e.get("ph") == "X"]


def test_every_layer_is_named_in_the_trace(traced):
    step, _, events = traced
    names = {event.get("name") for event in events}
    missing = [layer.name for layer in model_layers(step.model) if layer.name not in names]
    assert not missing and set(PHASES) <= names


def test_each_layer_has_a_forward_and_a_backward_range(traced):
    step, _, events = traced
    (forward,), (backward,) = ranges_named(events, "forward"), ranges_named(events, "backward")

    def inside(span: tuple[float, float], phase: tuple[float, float]) -> bool:
        return phase[0] <= span[0] and span[1] <= phase[1]

    for layer in model_layers(step.model):
        spans = ranges_named(events, layer.name)
        if layer.modules or layer.name == "objective":  # mask_embedding has no module: backward only
            assert any(inside(span, forward) for span in spans), layer.name
        assert any(inside(span, backward) for span in spans), layer.name


def test_no_hook_is_left_on_the_model(traced):
    step, batch, _ = traced
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in step.model.modules())
    step(batch)


def test_a_gz_name_is_written_compressed(traced, tmp_path):
    step, batch, _ = traced
    path = trace_step(step, batch, model_layers(step.model), tmp_path / "step.json.gz")
    events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    assert ranges_named(events, "transformer.1")


def test_an_unwritable_place_is_one_error_naming_it(traced, tmp_path):
    step, batch, _ = traced
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(DiskWriteError, match="a-file"):
        trace_step(step, batch, model_layers(step.model), Path(blocked / "step.json"))
