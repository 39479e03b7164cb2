"""torch 2.0 to 2.3 on the measurement path (NVIDIA's torch for JetPack 5 is 2.0 or 2.1), on the torch installed here.

What those releases lack is patched away, and the same numbers must come out:
- torch.utils.module_tracker (2.4): FlopCounterMode attributes FLOPs to modules only from 2.4;
- torch.utils.flop_counter.flop_registry and shape_wrapper (2.3);
- register_multi_grad_hook that works under no_grad on a parameter (2.4).
The goldens (tests/golden/numbers) then hold with w2vprof's own counter (measure/flop_fallback.py), and where
this torch has the native counter, both give the same count for every module and op of a training step.
A real old torch is tested by .ci/test-dependency-floor.sh (README: what was run).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden" / "numbers"


def as_torch_before_2_4(monkeypatch) -> None:
    """This torch as torch 2.0-2.3 offers FLOP counting: no module tracker, no formula registry to extend."""
    monkeypatch.setitem(sys.modules, "torch.utils.module_tracker", None)  # importing it raises ImportError
    try:
        from torch.utils import flop_counter
    except ImportError:  # torch 2.0 has no flop counter at all
        return
    monkeypatch.delattr(flop_counter, "flop_registry", raising=False)  # (absent on a torch that is that old)
    monkeypatch.delattr(flop_counter, "shape_wrapper", raising=False)


def native_counter_here() -> bool:
    from w2vprof.measure.flop_fallback import native_counter_works

    return native_counter_works()


def test_the_fallback_counter_stands_in_before_torch_2_4(monkeypatch):
    from w2vprof.measure import flop_fallback
    from w2vprof.measure.flops import flop_formulas, formula_registry

    as_torch_before_2_4(monkeypatch)
    assert not flop_fallback.native_counter_works()
    assert isinstance(flop_fallback.counter_mode(flop_formulas()), flop_fallback.FallbackFlopCounter)
    registry = formula_registry()  # our matmul and convolution formulas, attention and conv backward on top
    import torch

    aten = torch.ops.aten
    assert {aten.mm, aten.addmm, aten.bmm, aten.convolution, aten.convolution_backward} <= set(registry)
    assert registry[aten.mm](torch.empty(3, 4, device="meta"), torch.empty(4, 5, device="meta"), out_val=None) == 120


def test_torch_2_0_without_any_flop_counter_module(monkeypatch):
    """torch 2.0 has no torch.utils.flop_counter at all: the summary still counts, with the goldens' numbers."""
    from dataclasses import fields

    import torch.utils

    from w2vprof.measure.summary import summarize
    from w2vprof.records import ModuleSummaryRow, rows_to_csv_text

    monkeypatch.setitem(sys.modules, "torch.utils.flop_counter", None)
    monkeypatch.delattr(torch.utils, "flop_counter", raising=False)
    with pytest.raises(ImportError):
        from torch.utils import flop_counter  # noqa: F401 - the patch holds
    rows = summarize("tiny", 1.0, 1, per_layer=True)
    expected = (GOLDEN / "summary_tiny_layers_1s.csv").read_text()
    assert rows_to_csv_text(rows, [f.name for f in fields(ModuleSummaryRow)]) == expected


@pytest.mark.skipif(not native_counter_here(), reason="this torch has no native per-module counter to compare with")
def test_the_native_counter_is_used_where_torch_has_it():
    from torch.utils.flop_counter import FlopCounterMode

    from w2vprof.measure import flop_fallback
    from w2vprof.measure.flops import flop_formulas

    assert isinstance(flop_fallback.counter_mode(flop_formulas()), FlopCounterMode)


def training_step_counts(model, batch) -> tuple[dict, dict]:
    """(after forward, after forward and backward) counts of one seeded training step, op names as text."""
    import torch

    from w2vprof.measure.flops import count_flops

    torch.manual_seed(0)
    model.zero_grad(set_to_none=True)
    with count_flops() as counter:
        output = model(batch.waveforms, batch.lengths)
        forward = counter.snapshot().by_module
        output.loss.backward()
        both = counter.snapshot().by_module
    return forward, both


@pytest.mark.integration
@pytest.mark.skipif(not native_counter_here(), reason="this torch has no native per-module counter to compare with")
def test_the_fallback_counts_a_training_step_as_torchs_counter(monkeypatch):
    """Every module, every op, forward and backward (masking, Gumbel quantizer, contrastive loss included)."""
    import torch

    from w2vprof.models import build_model
    from w2vprof.workload import make_workload

    torch.manual_seed(0)
    model = build_model("tiny").train()
    batch = next(make_workload(1.0).batches(2, 0))
    native = training_step_counts(model, batch)
    as_torch_before_2_4(monkeypatch)
    fallback = training_step_counts(model, batch)
    for ours, torchs in zip(fallback, native):
        assert ours == torchs
    forward, both = native
    assert len([path for path, ops in forward.items() if sum(ops.values())]) > 20
    assert sum(both["Global"].values()) > 2 * sum(forward["Global"].values())  # the backward was counted


@pytest.mark.parametrize(
    "golden, model, seconds, batch, per_layer",
    [
        ("summary_base_5.5.csv", "base", 5.5, 1, False),
        ("summary_tiny_layers_1s.csv", "tiny", 1.0, 1, True),
    ],
)
def test_summary_goldens_hold_with_the_fallback_counter(monkeypatch, golden, model, seconds, batch, per_layer):
    from dataclasses import fields

    from w2vprof.measure.summary import summarize
    from w2vprof.records import ModuleSummaryRow, rows_to_csv_text

    as_torch_before_2_4(monkeypatch)
    rows = summarize(model, seconds, batch, per_layer=per_layer)
    assert rows_to_csv_text(rows, [f.name for f in fields(ModuleSummaryRow)]) == (GOLDEN / golden).read_text()


#: The layers after the mask: they run on the masked frames only, so their FLOPs follow the mask's draw.
AFTER_THE_MASK = ("final_proj", "quantizer", "project_q", "contrastive_loss")


@pytest.mark.integration
def test_the_tiny_profile_goldens_hold_with_the_fallback_counter(monkeypatch):
    """Every layer's FLOPs and activation bytes as the goldens; the layers after the mask per masked frame.

    The mask is drawn from seeded random numbers, and torch releases draw different streams from one seed (2.0 to
    2.3 mask 40 of the 98 frames of this batch where the goldens' torch masks 56): per masked frame the heads'
    FLOPs are the same. With the torch the goldens came from, everything is equal.
    """
    from w2vprof.measure.engine import ProfileConfig, profile_configuration

    as_torch_before_2_4(monkeypatch)
    config = ProfileConfig(model="tiny", batch=2, seconds=1.0, repeats=2, device="cpu", telemetry=False)
    result = profile_configuration(config)
    record = result.record
    golden = json.loads((GOLDEN / "profile_tiny_b2_1s.json").read_text())["values"]
    frames = 98  # 2 utterances of 49 frames
    masked, golden_masked = round(record.masked_fraction * frames), round(float(golden["masked_fraction"]) * frames)
    expected = {
        row["layer"]: row for row in csv.DictReader(io.StringIO((GOLDEN / "profile_tiny_b2_1s_layers.csv").read_text()))
    }
    assert [layer.layer for layer in result.layers] == list(expected)
    for layer in result.layers:
        row = expected[layer.layer]
        assert layer.params == int(row["params"]), layer.layer
        for column in ("fwd_flops", "bwd_flops"):
            value = int(row[column])
            if layer.layer in AFTER_THE_MASK:
                assert getattr(layer, column) * golden_masked == value * masked, (layer.layer, column)
            else:
                assert getattr(layer, column) == value, (layer.layer, column)
    assert record.fwd_flops == sum(layer.fwd_flops for layer in result.layers)
    if masked == golden_masked:  # the goldens' random stream: the whole record
        for column in ("fwd_flops", "bwd_flops", "train_flops", "act_mem_bytes", "optim_state_bytes"):
            assert str(getattr(record, column)) == golden[column], column


def test_module_hooks_register_gradient_hooks_in_grad_mode(monkeypatch):
    """Before torch 2.4, register_multi_grad_hook fails on a parameter under no_grad (it reaches the leaf's gradient
    accumulator through a view, which no_grad makes without one). The summary counts under no_grad."""
    import torch
    import torch.autograd.graph

    from w2vprof.measure.flop_fallback import FallbackFlopCounter, formula_registry

    real = torch.autograd.graph.register_multi_grad_hook

    def as_before_2_4(tensors, fn):
        if not torch.is_grad_enabled() and any(t.grad_fn is None for t in tensors):
            raise AttributeError("'NoneType' object has no attribute 'next_functions'")
        return real(tensors, fn)

    monkeypatch.setattr(torch.autograd.graph, "register_multi_grad_hook", as_before_2_4)
    linear = torch.nn.Linear(4, 3)
    with torch.no_grad(), FallbackFlopCounter(formula_registry({})) as counter:
        linear(torch.nn.Parameter(torch.randn(2, 4)))  # as weight norm's parametrization gets its parameters
    assert sum(counter.get_flop_counts()["Linear"].values()) == 2 * 2 * 4 * 3


def test_on_meta_makes_one_hot_without_a_kernel():
    """torch 2.1 has no meta one_hot even when num_classes is given; on_meta makes the shape itself."""
    import torch

    from w2vprof.models.meta import on_meta

    with on_meta():
        indices = torch.zeros(2, 3, dtype=torch.long)
        one_hot = torch.nn.functional.one_hot(indices, 5)
    assert one_hot.is_meta and one_hot.shape == (2, 3, 5) and one_hot.dtype == torch.long


def recomputations_seen(model, batch) -> list:
    """recomputing_layer() each time transformer.0's feed-forward runs in one forward and backward."""
    from w2vprof.measure.recipes import recomputing_layer

    seen = []
    feed_forward = model.get_submodule("transformer.layers.0.feed_forward")
    handle = feed_forward.register_forward_hook(lambda *_: seen.append(recomputing_layer()))
    try:
        model(batch.waveforms, batch.lengths).loss.backward()
    finally:
        handle.remove()
    return seen


@pytest.mark.integration
def test_checkpointing_announces_its_recomputation_without_context_fn(monkeypatch):
    """torch 2.0's checkpoint has no context_fn: the recomputation is then the forward that backward runs."""
    import torch
    import torch.utils.checkpoint

    from w2vprof.measure.recipes import apply_recipe, make_recipe
    from w2vprof.models import build_model
    from w2vprof.models.layers import wav2vec2_layers as model_layers
    from w2vprof.workload import make_workload

    real = torch.utils.checkpoint.checkpoint

    def checkpoint_of_torch_2_0(function, *args, use_reentrant=True, **kwargs):
        assert "context_fn" not in kwargs  # torch 2.0 would hand it to `function`
        return real(function, *args, use_reentrant=use_reentrant, **kwargs)

    batch = next(make_workload(1.0).batches(2, 0))
    for patched in (False, True):
        if patched:
            monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", checkpoint_of_torch_2_0)
        torch.manual_seed(0)
        model = build_model("tiny").train()
        apply_recipe(model, make_recipe(checkpointing="transformer"), model_layers(model))
        assert recomputations_seen(model, batch) == [None, "transformer.0"], patched
