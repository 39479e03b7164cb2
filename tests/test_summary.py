"""Table 1 of the paper, counted on the meta device; checked against a real pass, the paper and fvcore."""

from __future__ import annotations

import csv
import io
import json

import pytest

from conftest import run_cli_in_process
from w2vprof.measure.summary import summarize

# The paper's Table 1 (5.5 s, batch 1): params in M, GFLOPs. Quantization GFLOPs are not compared:
# the paper counts something we cannot see exactly (docs/models.md explains the difference).
PAPER = {
    "base": {"cnn_encoder": (4.60, 27.20), "transformer": (89.78, 49.16), "quantizer": (0.41, None), "total": 94.79},
    "large": {
        "cnn_encoder": (4.73, 27.28),
        "transformer": (310.70, 170.16),
        "quantizer": (0.57, None),
        "total": 316.00,
    },
}


@pytest.fixture(scope="module", params=["base", "large"])
def table1(request):
    return request.param, {row.module: row for row in summarize(request.param, 5.5, 1)}


def test_table1_params_and_flops_match_the_paper(table1):
    model, rows = table1
    for module, (params_m, gflops) in ((m, v) for m, v in PAPER[model].items() if m != "total"):
        # 0.5 %, or half a unit of the paper's last digit where its rounding is coarser (0.57408 M -> 0.57)
        assert rows[module].params / 1e6 == pytest.approx(params_m, rel=0.005, abs=0.005), module
        if gflops is not None:
            assert rows[module].inference_flops / 1e9 == pytest.approx(gflops, rel=0.01), module
    # The paper's total counts CNN encoder + transformer + quantizer, without the heads.
    without_heads = rows["total"].params - rows["heads"].params
    assert without_heads / 1e6 == pytest.approx(PAPER[model]["total"], rel=0.005)


def test_groups_add_up_to_total(table1):
    _, rows = table1
    groups = [r for name, r in rows.items() if name != "total"]
    assert sum(r.params for r in groups) == rows["total"].params
    assert sum(r.inference_flops for r in groups) == rows["total"].inference_flops


def test_attention_row_is_the_arithmetic():
    # base at 1 s: 16000 samples -> 49 frames; per layer QK^T and AV: 2 * 2 * T^2 * D = 4 * 49^2 * 768.
    rows = {row.module: row for row in summarize("base", 1.0, 1)}
    assert rows["attention"].inference_flops == 12 * 4 * 49 * 49 * 768


def test_first_conv_flops_are_the_arithmetic():
    # tiny, 1 s: conv0 has 32 channels, kernel 10, stride 5 -> (16000 - 10) // 5 + 1 = 3199 frames;
    # 2 * 3199 * 32 * 1 * 10 = 2,047,360 FLOPs.
    rows = {row.module: row for row in summarize("tiny", 1.0, 1, per_layer=True)}
    assert rows["cnn.0"].inference_flops == 2 * 3199 * 32 * 10


def test_flops_scale_with_batch():
    one = {r.module: r.inference_flops for r in summarize("tiny", 2.0, 1)}
    three = {r.module: r.inference_flops for r in summarize("tiny", 2.0, 3)}
    for module in one:
        assert three[module] == 3 * one[module], module


@pytest.mark.integration
@pytest.mark.parametrize("model_name, seconds", [("tiny", 1.0), ("base", 0.5)])
def test_conv_and_linear_flops_equal_twice_fvcore(model_name, seconds):
    """Independent oracle: fvcore counts multiply-adds of each conv/linear layer on the same input."""
    import torch
    from fvcore.nn import FlopCountAnalysis

    from w2vprof.measure.flops import count_flops
    from w2vprof.models import build_model

    model = build_model(model_name).eval()
    inputs: dict[str, torch.Tensor] = {}
    handles = []

    def keep_input(name):
        def hook(module, args, output):  # returns None: a hook's return value would replace the output
            inputs.setdefault(name, args[0])

        return hook

    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Linear)):
            handles.append(module.register_forward_hook(keep_input(name)))
    with torch.no_grad(), count_flops() as counter:
        model(torch.zeros(1, int(seconds * 16000)), inference_only=True)
    for handle in handles:
        handle.remove()
    ours = counter.snapshot()
    prefix = type(model).__name__
    assert len(inputs) >= 10
    for name, tensor in inputs.items():
        module = model.get_submodule(name)
        analysis = FlopCountAnalysis(module, (tensor,))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        assert ours.module_total(f"{prefix}.{name}") == 2 * analysis.total(), name


def real_pass_count(model_name: str, seconds: float, batch: int):
    """The reference: a randomly initialised model on the CPU, a real forward pass under torch's counter."""
    import torch

    from w2vprof.measure.flops import count_flops
    from w2vprof.models import build_model

    torch.manual_seed(0)
    model = build_model(model_name).eval()
    with torch.no_grad(), count_flops() as counter:
        model(torch.randn(batch, int(round(seconds * 16000))), inference_only=True)
    return model, counter.snapshot()


@pytest.mark.integration
@pytest.mark.parametrize("model_name, seconds, batch", [("tiny", 1.0, 1), ("tiny", 2.7, 3), ("base", 1.0, 1)])
def test_meta_count_equals_a_real_pass(model_name, seconds, batch):
    import torch

    from w2vprof.measure.flops import count_flops, subtree_flops
    from w2vprof.measure.summary import summary_rows
    from w2vprof.models import build_model
    from w2vprof.models.meta import on_meta

    model, real = real_pass_count(model_name, seconds, batch)
    with on_meta(), torch.no_grad():
        meta_model = build_model(model_name).eval()
        with count_flops() as counter:
            meta_model(torch.zeros(batch, int(round(seconds * 16000))), inference_only=True)
    meta = counter.snapshot()
    assert next(meta_model.parameters()).is_meta
    # Every module, attention products apart (the CPU kernel there, the math path's matmuls on meta).
    assert set(meta.by_module) == set(real.by_module)
    for path in real.by_module:
        for attention in (True, False):
            assert subtree_flops(meta, path, attention) == subtree_flops(real, path, attention), (path, attention)
    for per_layer in (False, True):
        assert summary_rows(model_name, meta_model, meta, seconds, batch, per_layer) == summary_rows(
            model_name, model, real, seconds, batch, per_layer
        )
    assert summarize(model_name, seconds, batch) == summary_rows(model_name, model, real, seconds, batch, False)


def test_summary_csv_contract_and_json():
    result = run_cli_in_process("summary", "--model", "tiny", "--seconds", "1", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["model", "module", "params", "inference_flops", "seconds", "batch"]
    assert [r["module"] for r in rows] == ["cnn_encoder", "transformer", "attention", "quantizer", "heads", "total"]
    as_json = json.loads(run_cli_in_process("summary", "--model", "tiny", "--seconds", "1", "--format", "json").stdout)
    assert [r["module"] for r in as_json] == [r["module"] for r in rows]
    assert as_json[-1]["params"] == int(rows[-1]["params"])


def test_summary_layers_and_out_file(tmp_path):
    out = tmp_path / "t1.csv"
    result = run_cli_in_process(
        "summary", "--model", "tiny", "--seconds", "1", "--layers", "--format", "csv", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    modules = [row["module"] for row in csv.DictReader(out.open())]
    assert modules[:8] == [f"cnn.{i}" for i in range(7)] + ["feature_projection"]
    assert "transformer.1" in modules and modules[-1] == "total"


def test_summary_table_renders():
    result = run_cli_in_process("summary", "--model", "tiny", "--seconds", "1")
    assert result.returncode == 0
    assert "cnn_encoder" in result.stdout and "GFLOPs" in result.stdout


def test_on_meta_builds_the_same_parameters_with_no_data():
    from w2vprof.models import build_model
    from w2vprof.models.meta import on_meta

    real = build_model("tiny")
    with on_meta():
        meta = build_model("tiny")
    assert [(n, p.shape) for n, p in meta.named_parameters()] == [(n, p.shape) for n, p in real.named_parameters()]
    assert all(p.is_meta for p in meta.parameters())
    # weight norm's reparametrised weight still has the conv's shape (made directly, not computed)
    with on_meta():
        assert meta.transformer.pos_conv_embed.conv.weight.shape == real.transformer.pos_conv_embed.conv.weight.shape


SUMMARY_THEN_COMPILE = """
import sys, torch
from torch.utils import flop_counter
from w2vprof.measure.flops import DYNAMO_DISABLED
from w2vprof.measure.summary import summarize
rows = summarize("tiny", 1.0)
print("dynamo imported by summary:", "torch._dynamo" in sys.modules or "_dynamo" in vars(torch))
mode = getattr(flop_counter, "_FlopCounterMode", None)
dispatch = getattr(getattr(mode, "__torch_dispatch__", None), "__wrapped__", None)
print("left behind:", hasattr(dispatch, DYNAMO_DISABLED))
compiled = torch.compile(torch.nn.Linear(4, 4), backend="eager")
print("compiled:", tuple(compiled(torch.randn(2, 4)).shape), type(torch._dynamo.disable).__name__)
print("total:", rows[-1].inference_flops)
"""


@pytest.mark.integration
def test_summary_never_imports_torch_dynamo_and_compile_still_works_after():
    """torch imports torch._dynamo (over a second) the first time its FLOP counter or a meta reference runs;
    summary stands in for it while counting, then puts everything back: a later torch.compile is untouched."""
    import importlib.util
    import subprocess
    import sys

    import torch

    if importlib.util.find_spec("torch.utils.flop_counter") is None:
        pytest.skip(f"torch {torch.__version__} has no torch.utils.flop_counter (torch 2.1+): nothing to stand in for")
    done = subprocess.run([sys.executable, "-c", SUMMARY_THEN_COMPILE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert lines["dynamo imported by summary"] == "False"
    assert lines["left behind"] == "False"
    assert lines["compiled"] == "(2, 4) function"
    assert int(lines["total"]) == next(r.inference_flops for r in summarize("tiny", 1.0) if r.module == "total")
