"""plan and feasibility for every model family and each objective, from measured rows (tests/data/models.csv:
hand-made rows of base, hubert-base and wavlm-base at 1 and 5.5 s, batch 4, fp32)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli_in_process
from w2vprof.analysis.data import latest_by_config, load_results
from w2vprof.analysis.feasibility import fit_memory
from w2vprof.analysis.plan import plan_recipes, target_for
from w2vprof.devices.profiles import load_profiles

MODELS_CSV = str(Path(__file__).parent / "data" / "models.csv")
NX = "Jetson Xavier NX"


def _rows_with_ctc(model: str):
    """The file's rows, `model`'s marked as CTC fine-tuning (as a results file with an objective column has them)."""
    rows = load_results([Path(MODELS_CSV)])
    for row in rows:
        if row.model == model:
            row.objective = "ctc"  # the column another change adds; read with getattr until then
    return rows


def test_feasibility_takes_a_family_name():
    done = run_cli_in_process("feasibility", MODELS_CSV, "--model", "hubert-base", "--device", NX, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert {row["model"] for row in json.loads(done.stdout)} == {"hubert-base"}


def test_plan_takes_a_family_name():
    done = run_cli_in_process(
        "plan", MODELS_CSV, "--model", "wavlm-base", "--memory", "64GiB", "--seconds", "8", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert {row["model"] for row in plan["rows"]} == {"wavlm-base"} and plan["rows"][0]["fits"]
    assert "objective" not in plan["target"]  # a pretraining plan's JSON as before objectives


def test_rows_of_another_objective_are_kept_apart():
    rows = _rows_with_ctc("hubert-base")
    assert {r.model for r in latest_by_config(rows).values()} == {"base", "wavlm-base"}
    assert {r.model for r in latest_by_config(rows, objective="ctc").values()} == {"hubert-base"}
    assert {f.model for f in fit_memory(rows, "ctc").fits} == {"hubert-base"}
    target = target_for(load_profiles(None), NX, None, "hubert-base", 4, 8.0, objective="ctc")
    plan = plan_recipes(rows, target)
    assert [row.recipe for row in plan.rows] == ["default"] and "hubert-base (ctc)" in plan.verdict
    # the paper measured pretraining: its Table 2 time is no basis for a CTC step
    assert "Table 2" not in plan.rows[0].time_basis


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("feasibility", MODELS_CSV, "--model", "nosuch"), "hubert-base"),
        (("feasibility", MODELS_CSV, "--objective", "finetune"), "pretrain, ctc"),
        (("plan", MODELS_CSV, "--model", "nosuch", "--memory", "8GiB", "--seconds", "4"), "wavlm-base"),
        (("plan", MODELS_CSV, "--model", "base", "--objective", "x", "--memory", "8GiB", "--seconds", "4"), "ctc"),
        (("plan", MODELS_CSV, "--model", "base", "--objective", "ctc", "--memory", "8GiB", "--seconds", "4"), "ctc"),
    ],
)
def test_bad_model_or_objective_is_one_line(args, says):
    done = run_cli_in_process(*args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr
