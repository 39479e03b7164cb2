"""profile and sweep take every model family and `--objective pretrain|ctc` (issue 21): the settings, their bad
input (one line, exit 2, before anything is measured), the `objective` column, the sweep's resume key and
`--preset models`. Nothing here trains (tests/test_objective_training.py does)."""

from __future__ import annotations

import textwrap
from dataclasses import fields
from pathlib import Path

import pytest

from conftest import QuietProgress, fake_sweep_record, run_cli_in_process
from w2vprof.measure.engine import ProfileConfig, build_identity, build_measured_model, check_config
from w2vprof.models import model_names
from w2vprof.paper import PAPER_BATCH, PAPER_PRECISION, PAPER_SECONDS
from w2vprof.records import (
    DEFAULT_OBJECTIVE,
    RESULT_COLUMNS,
    SCHEMA_VERSION,
    ResultRecord,
    objective_of,
    read_results_csv,
)
from w2vprof.sweep.grid import FAMILY_BASE_MODELS, PRESETS, GridSpec, expand
from w2vprof.sweep.plan import SweepRequest, plan_sweep
from w2vprof.sweep.runner import config_label, resume_key, run_sweep

DATA = Path(__file__).parent / "data"

#: A user's model whose layer map is all CNN: `--freeze cnn` leaves nothing of it to train.
ALL_CNN_FAMILY = """
    from w2vprof.models import CTC, PRETRAIN, LayerSpec, LossOutput, ModelFamily
    from torch import nn


    class AllCnn(ModelFamily):
        name = "all-cnn"
        objectives = (PRETRAIN, CTC)

        def build(self, objective=PRETRAIN, options=None):
            self.check_objective(objective)
            return nn.Sequential(nn.Conv1d(1, 4, 3))

        def loss(self, model, batch, targets):
            return LossOutput(model(batch.waveforms[:, None]).mean())

        def layers(self, model):
            return [LayerSpec("cnn.0", "cnn", ("0",))]


    def family():
        return AllCnn()


    def not_a_family():
        return 42
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch) -> str:
    """A module of the user's own beside them (the working directory), named for this test alone."""
    name = f"wire_user_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(ALL_CNN_FAMILY))
    monkeypatch.chdir(tmp_path)
    return name


def _one_line_exit_2(*args: str) -> str:
    result = run_cli_in_process(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


@pytest.fixture(params=["profile", "sweep"])
def command(request, tmp_path) -> list[str]:
    """Each measuring command, with a results place that is never written (bad input stops it first)."""
    out = tmp_path / ("out" if request.param == "profile" else "r.csv")
    return [request.param, "--out", str(out), "--batch", "1", "--seconds", "1"]


def test_an_unknown_model_lists_every_known_one(command):
    err = _one_line_exit_2(*command, "--model", "nosuch")
    assert "unknown model 'nosuch'" in err
    assert all(name in err for name in model_names()) and "package.module:factory" in err


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--vocab", "0"], "--vocab must be a whole number of at least 2"),
        (["--vocab", "x"], "--vocab must be"),
        (["--clusters", "0"], "--clusters must be a positive whole number"),
        (["--objective", "bogus"], "'bogus'"),
        (["--model", "nosuch.module:f"], "cannot import module nosuch.module"),
    ],
)
def test_bad_objective_settings_are_one_line_and_exit_2(command, args, fragment):
    err = _one_line_exit_2(*command, "--model", "tiny", *args)
    assert fragment in err


def test_a_factory_returning_something_else_names_it(command, user_module):
    err = _one_line_exit_2(*command, "--model", f"{user_module}:not_a_family")
    assert f"{user_module}.not_a_family() returned int 42, not a w2vprof.models.ModelFamily" in err


def test_ctc_with_a_recipe_that_freezes_everything_is_refused(command, user_module):
    err = _one_line_exit_2(*command, "--model", f"{user_module}:family", "--objective", "ctc", "--freeze", "cnn")
    assert "--freeze cnn leaves no trainable parameter" in err and "(ctc)" in err
    out = Path(command[2])
    assert not out.exists() or not read_results_csv(out, require_rows=False)  # refused before anything ran


def test_freezing_the_cnn_of_a_builtin_ctc_model_leaves_its_encoder_and_head_to_train():
    check_config(ProfileConfig(model="hubert-tiny", objective="ctc", recipe="freeze=cnn+2", device="cpu"))


def test_every_builtin_model_and_objective_is_a_valid_configuration():
    for name in model_names():
        for objective in ("pretrain", "ctc"):
            assert check_config(ProfileConfig(model=name, objective=objective, device="cpu")) == "cpu"


def test_the_build_identity_tells_objectives_and_their_options_apart():
    pretrain, ctc = ProfileConfig(model="tiny"), ProfileConfig(model="tiny", objective="ctc")
    identities = {
        build_identity(pretrain),
        build_identity(ctc),
        build_identity(ProfileConfig(model="tiny", objective="ctc", vocab=40)),
        build_identity(ProfileConfig(model="hubert-tiny", clusters=50)),
        build_identity(ProfileConfig(model="hubert-tiny")),
    }
    assert len(identities) == 5
    # vocab means nothing to pretraining: the same model
    assert build_identity(pretrain) == build_identity(ProfileConfig(model="tiny", vocab=40))


def test_a_model_built_ahead_for_pretraining_is_not_measured_for_ctc():
    built = build_measured_model(ProfileConfig(model="tiny", device="cpu"), "cpu")
    with pytest.raises(ValueError, match=r"built for tiny/seed 0/cpu \(tiny/pretrain\), asked for .*tiny/ctc/vocab=32"):
        built.claim(ProfileConfig(model="tiny", objective="ctc", device="cpu"), "cpu")
    built.claim(ProfileConfig(model="tiny", device="cpu"), "cpu")


# -- the objective column ------------------------------------------------------------------------------------------
def test_objective_is_the_last_column_and_older_files_read_as_pretraining():
    assert RESULT_COLUMNS[-1] == "objective" and fields(ResultRecord)[-1].default == DEFAULT_OBJECTIVE
    assert SCHEMA_VERSION == 3
    for old in ("small.csv", "old_schema.csv"):
        rows = read_results_csv(DATA / old)
        assert rows and {objective_of(r) for r in rows} == {"pretrain"}
    assert objective_of(ResultRecord(objective="")) == "pretrain"


def test_resume_key_and_label_tell_objectives_apart():
    key = ("tiny", 1, 1.0, "fp32", "cpu", "synthetic", "fp")
    assert resume_key(*key) == resume_key(*key, "default", "pretrain")
    assert resume_key(*key, "default", "ctc") != resume_key(*key, "default", "pretrain")
    assert "ctc" in config_label(ProfileConfig(model="tiny", objective="ctc"))
    assert "pretrain" not in config_label(ProfileConfig(model="tiny"))


# -- the sweep's grid ----------------------------------------------------------------------------------------------
def test_preset_models_is_each_family_base_model_at_the_paper_configuration_both_objectives():
    configs = expand(PRESETS["models"], "cpu", {})
    assert FAMILY_BASE_MODELS == ("base", "hubert-base", "wavlm-base")
    assert sorted((c.model, c.objective) for c in configs) == sorted(
        (model, objective) for model in FAMILY_BASE_MODELS for objective in ("pretrain", "ctc")
    )
    assert {(c.batch, c.seconds, c.precision) for c in configs} == {(PAPER_BATCH, PAPER_SECONDS, PAPER_PRECISION)}


def test_the_grid_refuses_a_recipe_that_leaves_nothing_to_train(user_module):
    from w2vprof.errors import BadInput

    spec = GridSpec((f"{user_module}:family",), (1.0,), (1,), ("fp32",), recipes=("freeze=cnn",))
    with pytest.raises(BadInput, match="leaves no trainable parameter"):
        expand(spec, "cpu", {})


def test_a_sweep_over_objectives_resumes_each_row_once(tmp_path):
    measured: list[tuple[str, str]] = []

    def fake_measure(config, options):
        measured.append((config.model, config.objective))
        return fake_sweep_record(config, options), []

    def sweep(resume: bool) -> None:
        request = SweepRequest(
            models=("tiny", "hubert-tiny"),
            objectives=("pretrain", "ctc"),
            seconds=(1.0,),
            batches=(1,),
            precisions=("fp32",),
            device="cpu",
            out=tmp_path / "r.csv",
            resume=resume,
        )
        with plan_sweep(request, warm_start=False) as plan:
            assert {c.vocab for c in plan.configs} == {32}
            run_sweep(plan, QuietProgress(), measure=fake_measure)

    sweep(resume=False)
    assert sorted(measured) == sorted((m, o) for m in ("tiny", "hubert-tiny") for o in ("pretrain", "ctc"))
    rows = read_results_csv(tmp_path / "r.csv")
    assert sorted((r.model, r.objective) for r in rows) == sorted(measured)
    measured.clear()
    sweep(resume=True)
    assert measured == []
