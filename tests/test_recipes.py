"""Training recipes on the tiny model: what each option changes, checked by arithmetic on real measurement passes.

Every profile here trains `tiny` (batch 4, 1 s) for one timed step: the numbers compared are counts (FLOPs, bytes,
parameters), never times. Compilation itself is slow on a loaded 2-core machine, so its test compiles with dynamo's
`eager` backend (tracing, no code generation): what is checked is that compilation is kept out of the timed steps
and reported, not how fast inductor's code runs (benchmarks/recipes.py compiles for real).
"""

from __future__ import annotations

import csv
import re
from dataclasses import replace

import pytest

from conftest import run_cli_in_process
from w2vprof.compat import major_minor
from w2vprof.errors import BadInput
from w2vprof.measure.recipes import (
    OPTIMIZER_FLOPS_PER_PARAM,
    Recipe,
    RecipeUnsupported,
    make_recipe,
    parse_recipe,
)

BATCH, SECONDS = 4, 1.0
#: The first torch with torch.optim.Adafactor.
ADAFACTOR_TORCH = (2, 5)


def _measure(recipe: str):
    from w2vprof.measure.engine import ProfileConfig, profile_configuration

    config = ProfileConfig(
        model="tiny", batch=BATCH, seconds=SECONDS, repeats=1, warmup=1, device="cpu", telemetry=False, recipe=recipe
    )
    return profile_configuration(config)


def _profile(recipe: str):
    result = _measure(recipe)
    assert result.record.status == "ok", result.record.error
    return result


def _torch_version() -> tuple[int, int]:
    import torch

    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)


@pytest.fixture(scope="module")
def measured():
    """One tiny profile per recipe, measured once for the whole module."""
    recipes = [
        "default",
        "ckpt=transformer",
        "freeze=cnn",
        "freeze=cnn+1",
        "accum=4",
        "optim=sgd",
        "ckpt=all",
    ]
    return {recipe: _profile(recipe) for recipe in recipes}


def _rows(result, kind: str):
    return [layer for layer in result.layers if layer.kind == kind]


def _cnn_params() -> int:
    from w2vprof.models import build_model

    return sum(p.numel() for p in build_model("tiny").feature_extractor.parameters())


# -- the recipe value ----------------------------------------------------------------------------------------------
def test_default_and_canonical_text():
    assert Recipe().text == "default" and parse_recipe("") == Recipe() and parse_recipe("default") == Recipe()
    recipe = make_recipe("transformer", "cnn", "2", "adamw", False)
    assert recipe.text == "ckpt=transformer,freeze=cnn,accum=2"  # options at their default are left out
    # any order, defaults spelled out or not: one canonical text
    assert parse_recipe("optim=adamw,accum=2,freeze=cnn,ckpt=transformer").text == recipe.text
    assert parse_recipe("compile,optim=sgd,ckpt=all").text == "ckpt=all,optim=sgd,compile"
    assert make_recipe(freeze="cnn+0").text == "freeze=cnn" and make_recipe(freeze="cnn+03").freeze == "cnn+3"
    assert parse_recipe(recipe.text) == recipe


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"checkpointing": "sometimes"},
            "checkpointing 'sometimes' is unknown; choose from none, transformer, cnn, all",
        ),
        ({"optimizer": "lion"}, "optimizer 'lion' is unknown; choose from adamw, sgd, adafactor"),
        ({"freeze": "transformer"}, "freeze 'transformer' is unknown"),
        ({"freeze": "cnn+x"}, "freeze 'cnn+x' is unknown"),
        ({"accumulate": "0"}, "accumulate must be a whole number >= 1"),
        ({"accumulate": "two"}, "accumulate must be a whole number >= 1"),
    ],
)
def test_bad_option_values_are_named(options, message):
    with pytest.raises(BadInput, match=re.escape(message)):
        make_recipe(**options)


def test_recipe_text_that_cannot_be_read():
    with pytest.raises(BadInput, match="cannot read 'fast=yes'"):
        parse_recipe("ckpt=all,fast=yes")


def test_recipe_checks_against_model_and_batch():
    with pytest.raises(BadInput, match="accumulate 3 does not divide batch 4"):
        make_recipe(accumulate=3).check("base", 4)
    with pytest.raises(BadInput, match="base has 12 transformer layers"):
        make_recipe(freeze="cnn+99").check("base", 4)
    make_recipe(freeze="cnn+12", accumulate=2).check("base", 4)  # the most there is: fine


# -- what each option measures -------------------------------------------------------------------------------------
@pytest.mark.integration
def test_default_recipe_row(measured):
    record = measured["default"].record
    assert (record.recipe, record.checkpointing, record.freeze, record.accumulate, record.optimizer) == (
        "default",
        "none",
        "none",
        1,
        "adamw",
    )
    assert record.recompute_flops == 0 and record.compile_sec is None
    assert record.trainable_params == record.param_bytes // 4
    assert all(layer.trainable and not layer.checkpointed for layer in measured["default"].layers)


@pytest.mark.integration
def test_optimizer_state_follows_the_optimizer(measured):
    adamw, sgd = measured["default"].record, measured["optim=sgd"].record
    # SGD with momentum: one fp32 buffer per parameter; AdamW: two (plus one step count per tensor)
    assert sgd.optim_state_bytes == 4 * sgd.trainable_params
    assert adamw.optim_state_bytes == pytest.approx(8 * adamw.trainable_params, rel=0.01)
    assert sgd.optim_flops == OPTIMIZER_FLOPS_PER_PARAM["sgd"] * sgd.trainable_params
    # the optimizer changes no forward or backward work
    assert (sgd.fwd_flops, sgd.bwd_flops) == (adamw.fwd_flops, adamw.bwd_flops)


@pytest.mark.integration
def test_adafactor_state_is_factored_where_torch_has_adafactor(measured):
    import torch

    adafactor = _measure("optim=adafactor").record
    if _torch_version() < ADAFACTOR_TORCH:  # a recipe this torch cannot run is recorded so, with the reason
        assert (adafactor.status, adafactor.error) == (
            "unsupported",
            f"torch {torch.__version__} has no torch.optim.Adafactor (torch 2.5 or newer)",
        )
        return
    assert adafactor.status == "ok", adafactor.error
    sgd = measured["optim=sgd"].record
    assert 0 < adafactor.optim_state_bytes < sgd.optim_state_bytes  # factored second moments


@pytest.mark.integration
def test_freezing_the_cnn(measured):
    default, frozen = measured["default"], measured["freeze=cnn"]
    assert frozen.record.trainable_params == default.record.trainable_params - _cnn_params()
    for layer in _rows(frozen, "cnn"):
        assert layer.act_mem_bytes == 0 and layer.bwd_flops == 0 and not layer.trainable
    cnn_backward = sum(layer.bwd_flops for layer in _rows(default, "cnn"))
    assert default.record.bwd_flops - frozen.record.bwd_flops == pytest.approx(cnn_backward, rel=0.02)
    assert frozen.record.optim_state_bytes == pytest.approx(8 * frozen.record.trainable_params, rel=0.01)
    assert frozen.record.grad_bytes == 4 * frozen.record.trainable_params


@pytest.mark.integration
def test_freezing_transformer_layers_too(measured):
    result = measured["freeze=cnn+1"]
    first, second = _rows(result, "transformer")
    assert (first.trainable, first.act_mem_bytes, first.bwd_flops) == (False, 0, 0)
    assert second.trainable and second.act_mem_bytes > 0
    # nothing below a frozen layer needs a gradient: the front end is frozen with it
    front = {layer.layer: layer for layer in result.layers}
    assert not front["feature_projection"].trainable and front["feature_projection"].act_mem_bytes == 0


@pytest.mark.integration
def test_accumulation_keeps_the_work_and_cuts_the_activations(measured):
    default, accumulated = measured["default"].record, measured["accum=4"].record
    assert accumulated.accumulate == 4 and accumulated.batch == BATCH
    assert accumulated.train_flops == pytest.approx(default.train_flops, rel=0.01)
    assert accumulated.act_mem_bytes <= 0.3 * default.act_mem_bytes
    assert accumulated.optim_flops == default.optim_flops  # one optimizer step per effective batch


@pytest.mark.integration
def test_checkpointing_the_transformer(measured):
    default, checkpointed = measured["default"], measured["ckpt=transformer"]
    layers = _rows(checkpointed, "transformer")
    forward = sum(layer.fwd_flops for layer in layers)
    assert checkpointed.record.recompute_flops == pytest.approx(forward, rel=0.02)
    assert all(layer.checkpointed and layer.recompute_flops == layer.fwd_flops for layer in layers)
    record = checkpointed.record
    assert record.bwd_flops == default.record.bwd_flops  # the recomputation is not backward work
    assert record.train_flops == record.fwd_flops + record.bwd_flops + record.recompute_flops + record.optim_flops
    assert record.act_mem_bytes < default.record.act_mem_bytes
    assert sum(layer.recompute_flops for layer in checkpointed.layers) == record.recompute_flops
    import torch

    found = major_minor(torch.__version__)
    if found is not None and found < (2, 1):
        pytest.xfail("torch 2.0's checkpoint keeps a layer's inputs outside the saved tensors counted (install.md)")
    # a checkpointed layer keeps its input only: far less than all it saved before
    for before, after in zip(_rows(default, "transformer"), layers, strict=True):
        assert 0 < after.act_mem_bytes < before.act_mem_bytes / 10


@pytest.mark.integration
def test_checkpointing_everything_below_the_heads(measured):
    result = measured["ckpt=all"]
    marked = {layer.kind for layer in result.layers if layer.checkpointed}
    assert marked == {"cnn", "projection", "positional", "transformer"}
    assert result.record.recompute_flops == pytest.approx(
        sum(layer.fwd_flops for layer in result.layers if layer.checkpointed), rel=0.02
    )


# -- compilation ---------------------------------------------------------------------------------------------------
def _dynamo_refusal():
    """torch's own reason why its compiler cannot run on this Python/platform (torch 2.0 stops at Python 3.10), or
    None."""
    from torch._dynamo.eval_frame import check_if_dynamo_supported

    try:
        check_if_dynamo_supported()
    except RuntimeError as exc:
        return str(exc)
    return None


@pytest.mark.integration
def test_compile_time_is_kept_out_of_the_timed_steps(monkeypatch):
    """dynamo with its eager backend stands in for inductor: a real compilation, without code generation. Where
    torch's compiler refuses this Python, the row is `unsupported` with torch's reason instead."""
    import torch
    from torch._dynamo.utils import counters

    from w2vprof.measure import engine

    monkeypatch.setattr("w2vprof.measure.recipes.COMPILE_BACKEND", "eager")
    frames_at_timing: list[int] = []
    real_timed_steps = engine.timed_steps

    def timed_steps(*args, **kwargs):
        frames_at_timing.append(sum(counters["frames"].values()))
        timed = real_timed_steps(*args, **kwargs)
        frames_at_timing.append(sum(counters["frames"].values()))
        return timed

    monkeypatch.setattr(engine, "timed_steps", timed_steps)
    refusal = _dynamo_refusal()
    record = _measure("compile").record
    assert record.compile and record.recipe == "compile"
    if refusal is not None:
        reason = f"torch {torch.__version__} cannot compile here: RuntimeError: {refusal}"
        assert (record.status, record.error, record.compile_sec) == ("unsupported", reason, None)
        return
    assert record.status == "ok", record.error
    assert record.compile_sec is not None and record.compile_sec > 0
    # nothing compiled while timed (before torch 2.5 a changing float argument, the Gumbel temperature, did)
    assert frames_at_timing[0] > 0 and frames_at_timing[1] == frames_at_timing[0]


def test_compiled_modules_get_float_arguments_as_tensors_where_dynamo_specializes_floats(monkeypatch):
    """The quantizer's temperature changes after every update: as a Python float it is one of dynamo's guards
    (torch < 2.5), so the compiled code gets it as a float32 0-dim tensor there, and unchanged elsewhere."""
    from types import SimpleNamespace

    import torch

    from w2vprof.measure import recipes

    seen = []

    def fake_compile(forward, **options):
        def compiled(*args, **kwargs):
            seen.append((args, kwargs))
            return forward(*args, **kwargs)

        return compiled

    class Scaled(torch.nn.Module):
        def forward(self, x, temperature):
            return x / temperature

    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.setattr(recipes, "compile_problem", lambda: None)
    layer = SimpleNamespace(kind="quantizer", modules=("quantizer",))
    for specializes, passed_as in ((True, torch.Tensor), (False, float)):
        monkeypatch.setattr(recipes, "_specializes_floats", lambda specializes=specializes: specializes)
        model = torch.nn.Module()
        model.quantizer = Scaled()
        recipes.compile_model(model, [layer])
        seen.clear()
        assert torch.equal(model.quantizer(torch.ones(3), 2.0), torch.full((3,), 0.5))
        assert torch.equal(model.quantizer(torch.ones(3), temperature=4.0), torch.full((3,), 0.25))
        (first_args, _), (_, second_kwargs) = seen
        for temperature, value in ((first_args[1], 2.0), (second_kwargs["temperature"], 4.0)):
            assert isinstance(temperature, passed_as) and float(temperature) == value
            if passed_as is torch.Tensor:
                assert temperature.dtype == torch.float32 and temperature.ndim == 0


@pytest.mark.integration
def test_a_platform_that_cannot_compile_is_unsupported(monkeypatch):
    def refuse(model, layers) -> None:
        raise RecipeUnsupported("torch.compile is not supported by torch X on this Python/platform")

    monkeypatch.setattr("w2vprof.measure.recipes.compile_model", refuse)
    from w2vprof.measure.engine import ProfileConfig, profile_configuration

    record = profile_configuration(
        ProfileConfig(model="tiny", batch=2, seconds=1.0, repeats=1, device="cpu", telemetry=False, recipe="compile")
    ).record
    assert (record.status, record.error) == (
        "unsupported",
        "torch.compile is not supported by torch X on this Python/platform",
    )
    assert record.compile and record.recipe == "compile"


@pytest.mark.integration
def test_a_compiler_that_fails_is_unsupported_with_its_reason(monkeypatch):
    def broken_compile(model, layers) -> None:
        def fail(*args, **kwargs):
            raise RuntimeError("InductorError: no working C++ compiler found\nmore text")

        model.forward = fail

    monkeypatch.setattr("w2vprof.measure.recipes.compile_model", broken_compile)
    from w2vprof.measure.engine import ProfileConfig, profile_configuration

    record = profile_configuration(
        ProfileConfig(model="tiny", batch=2, seconds=1.0, repeats=1, device="cpu", telemetry=False, recipe="compile")
    ).record
    assert record.status == "unsupported"
    assert record.error == "torch.compile failed here: RuntimeError: InductorError: no working C++ compiler found"


# -- the command line ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--accumulate", "3", "--batch", "4"], "--accumulate 3 does not divide --batch 4"),
        (["--freeze", "cnn+99", "--model", "base"], "--freeze cnn+99: base has 12 transformer layers"),
        (["--checkpointing", "sometimes"], "--checkpointing 'sometimes' is unknown"),
        (["--optimizer", "lion"], "--optimizer 'lion' is unknown"),
    ],
)
def test_profile_refuses_bad_recipes_in_one_line(tmp_path, args, fragment):
    result = run_cli_in_process("profile", *args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("w2vprof: error: ") and fragment in lines[0]
    assert not (tmp_path / "out").exists()


def test_sweep_refuses_bad_recipes_in_one_line(tmp_path):
    result = run_cli_in_process(
        "sweep", "--model", "tiny", "--batch", "2,4", "--accumulate", "1,4", "--out", str(tmp_path / "r.csv")
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "w2vprof: error: --accumulate 4 does not divide --batch 2: each of the 4 "
        "micro-batches must hold the same number of utterances"
    )


@pytest.mark.integration
def test_profile_writes_the_recipe_columns(tmp_path):
    out = tmp_path / "run"
    result = run_cli_in_process(
        "profile",
        "--model",
        "tiny",
        "--batch",
        "2",
        "--seconds",
        "1",
        "--repeats",
        "1",
        "--checkpointing",
        "transformer",
        "--freeze",
        "cnn",
        "--optimizer",
        "sgd",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    row = next(csv.DictReader((out / "results.csv").open()))
    assert row["recipe"] == "ckpt=transformer,freeze=cnn,optim=sgd" and row["checkpointing"] == "transformer"
    assert int(row["recompute_flops"]) > 0 and int(row["trainable_params"]) > 0
    layers = {r["layer"]: r for r in csv.DictReader((out / "layers.csv").open())}
    assert layers["cnn.0"]["trainable"] == "false" and layers["transformer.0"]["checkpointed"] == "true"
    assert "recipe" in result.stdout


# -- the sweep's grid and resume key --------------------------------------------------------------------------------
def test_the_recipes_preset_and_recipe_flags_make_the_grid():
    from w2vprof.sweep.grid import expand, preset_spec

    configs = expand(preset_spec("recipes"), "cpu", {})
    assert {(c.model, c.batch, c.seconds, c.precision) for c in configs} == {("base", 4, 5.5, "fp32")}
    recipes = [c.recipe for c in configs]
    assert recipes[0] == "default" and len(set(recipes)) == len(recipes)
    for single in ("ckpt=transformer", "freeze=cnn", "accum=2", "optim=sgd", "optim=adafactor", "compile"):
        assert single in recipes
    assert "ckpt=transformer,freeze=cnn" in recipes
    from w2vprof.cli.recipe_options import recipe_texts

    assert recipe_texts("none,transformer", None, "1,2", None, False) == (
        "default",
        "accum=2",
        "ckpt=transformer",
        "ckpt=transformer,accum=2",
    )
    assert recipe_texts(None, None, None, None, False) is None


def test_resume_key_and_pruning_tell_recipes_apart():
    from w2vprof.measure.engine import ProfileConfig
    from w2vprof.records import ResultRecord
    from w2vprof.sweep import runner

    default = ProfileConfig(model="tiny", batch=4, seconds=1.0, device="cpu")
    checkpointed = replace(default, recipe="ckpt=transformer")
    assert runner._config_key(default, "f") != runner._config_key(checkpointed, "f")
    # a default row written by schema 1 (no recipe column) is the default configuration
    old_row = ResultRecord(model="tiny", batch=4, seconds=1.0, device="cpu", recipe="", device_fingerprint="f")
    assert runner._record_key(old_row) == runner._config_key(default, "f")
    oom = ResultRecord(model="tiny", batch=2, seconds=1.0, precision="fp32", status="oom")
    assert runner._needs_at_least(default, oom) and not runner._needs_at_least(checkpointed, oom)
    assert "ckpt=transformer" in runner.config_label(checkpointed)


# -- the report ----------------------------------------------------------------------------------------------------
def _report_rows():
    from w2vprof.records import ResultRecord

    def row(recipe: str, peak: float, time: float, flops: int, **fields) -> ResultRecord:
        return ResultRecord(
            model="base",
            batch=4,
            seconds=5.5,
            precision="fp32",
            device="cpu",
            device_name="lab",
            recipe=recipe,
            peak_mem_bytes=int(peak),
            act_mem_bytes=int(peak / 2),
            sec_per_batch_median=time,
            train_flops=flops,
            peak_mem_source="rss_hwm",
            **fields,
        )

    return [
        row("default", 2.0e9, 2.0, 1000 * 10**9),
        row("ckpt=transformer", 1.0e9, 2.2, 1300 * 10**9, recompute_flops=300 * 10**9),
        row("freeze=cnn", 1.4e9, 1.5, 700 * 10**9),
    ]


@pytest.mark.integration
def test_report_recipes_table_relative_to_the_default():
    from w2vprof.report.build import ReportInputs, build_report

    report = build_report(ReportInputs(results=_report_rows(), sources=["synthetic"]))
    table = report.tables["recipes"]
    rows = {r[table.columns.index("recipe")]: r for r in table.rows}
    assert set(rows) == {"default", "ckpt=transformer", "freeze=cnn"}
    ckpt = rows["ckpt=transformer"]
    vs = [i for i, name in enumerate(table.columns) if name == "vs default"]
    assert [ckpt[i] for i in vs] == ["0.50x", "0.50x", "1.10x", "1.30x"]  # peak, activations, time, FLOPs
    assert ckpt[table.columns.index("recomputed GFLOPs")] == "300.0"
    assert "recipes_memory_vs_time.png" in report.figures
    assert report.figures["recipes_memory_vs_time.png"].startswith(b"\x89PNG")
    # the results table names each row's recipe; Table 2 is the plain step's
    assert report.tables["results"].columns[-1] == "recipe"
    assert report.tables["table2"].rows == [["lab", "4", "2.00", "-"]]


def test_report_without_recipes_has_no_recipes_table():
    from w2vprof.report.build import ReportInputs, build_report

    report = build_report(ReportInputs(results=_report_rows()[:1], sources=["synthetic"]))
    assert "recipes" not in report.tables and "recipes_memory_vs_time.png" not in report.figures
    assert "recipe" not in report.tables["results"].columns


def test_a_recipe_sweep_resumes_and_prunes_per_recipe(tmp_path):
    """Each recipe is its own configuration: resume skips the finished ones, and one recipe's OOM prunes only the
    larger configurations of that recipe."""
    from w2vprof.measure.recipes import parse_recipe
    from w2vprof.records import ResultRecord, read_results_csv
    from w2vprof.sweep.plan import SweepRequest, plan_sweep
    from w2vprof.sweep.runner import run_sweep

    class Quiet:
        def started(self, total, to_run): ...
        def running(self, index, config, eta_s): ...
        def finished(self, index, record, wall_s): ...

    measured = []

    def measure(config, options):
        measured.append((config.recipe, config.seconds))
        status = "oom" if config.recipe == "default" and config.seconds >= 2 else "ok"
        return ResultRecord(
            model=config.model,
            batch=config.batch,
            seconds=config.seconds,
            precision="fp32",
            device=config.device,
            status=status,
            sec_per_batch_median=0.01 if status == "ok" else None,
            device_fingerprint=options.device_identity.get("device_fingerprint", ""),
            **parse_recipe(config.recipe).record_fields(),
        ), []

    request = dict(
        models=("tiny",),
        seconds=(1.0, 2.0, 4.0),
        batches=(2,),
        precisions=("fp32",),
        repeats=1,
        device="cpu",
        recipes=("default", "ckpt=transformer"),
        out=tmp_path / "r.csv",
    )
    with plan_sweep(SweepRequest(**request), warm_start=False) as plan:
        run_sweep(plan, Quiet(), measure=measure)
    # default ran out at 2 s, so its 4 s is pruned; the checkpointed recipe runs every length
    assert measured == [
        ("default", 1.0),
        ("ckpt=transformer", 1.0),
        ("default", 2.0),
        ("ckpt=transformer", 2.0),
        ("ckpt=transformer", 4.0),
    ]
    rows = {(r.recipe, r.seconds): r for r in read_results_csv(tmp_path / "r.csv")}
    assert rows[("default", 4.0)].skipped_because == "tiny batch 2 2 s fp32 was oom"
    measured.clear()
    with plan_sweep(SweepRequest(**request, resume=True), warm_start=False) as plan:
        run_sweep(plan, Quiet(), measure=measure)
    assert measured == []  # every (configuration, recipe) is in the file
