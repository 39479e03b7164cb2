"""The measurement pass counts the backward once, per layer: its total must equal torch's own FLOP counter's."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("precision", ["fp32", "mixed"])
def test_backward_total_per_layer_equals_torchs_counter(precision):
    from w2vprof.measure.attribution import NodeLabeler, backward_flops_by_layer
    from w2vprof.measure.engine import ProfileConfig, build_measured_model, measurement_pass
    from w2vprof.measure.flops import count_flops
    from w2vprof.measure.step import TrainingStep
    from w2vprof.models.layers import OBJECTIVE
    from w2vprof.models.layers import wav2vec2_layers as model_layers
    from w2vprof.workload import make_workload

    config = ProfileConfig(model="tiny", batch=2, seconds=1.0, precision=precision, device="cpu")
    batch = next(make_workload(1.0).batches(2, 0))

    # torch's counter around the whole backward, as the engine counted it before
    model = build_measured_model(config, "cpu").fresh()
    step = TrainingStep.create(model, "cpu", precision)
    layers = model_layers(model)
    labeler = NodeLabeler(model, layers)
    with count_flops() as counter:
        with labeler.track():
            output = step.forward(batch)
        labeler.label_from(output.loss, OBJECTIVE)
        after_forward = counter.snapshot()
        with backward_flops_by_layer(labeler.labels):
            step.backward(output)
        torch_backward = counter.snapshot().minus(after_forward).total

    # the engine's pass on an identically built model
    fresh = build_measured_model(config, "cpu").fresh()
    counts = measurement_pass(TrainingStep.create(fresh, "cpu", precision), model_layers(fresh), batch)
    assert torch_backward > 0
    assert counts.bwd_flops == torch_backward
    assert counts.fwd_flops == after_forward.total
