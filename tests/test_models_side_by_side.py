"""Report and compare set models side by side at the paper's configuration (batch 4, 5.5 s, fp32), from
tests/data/models.csv (hand-made rows of base, hubert-base and wavlm-base); a single-model input is as before."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli_in_process
from w2vprof.analysis.data import load_results
from w2vprof.report.model_comparison import models_at_paper_config, shows_models

DATA = Path(__file__).parent / "data"
MODELS_CSV = str(DATA / "models.csv")
TITLE = "Models side by side"


def test_compare_sets_the_models_side_by_side():
    done = run_cli_in_process("compare", MODELS_CSV, "--format", "json")
    assert done.returncode == 0, done.stderr
    models = json.loads(done.stdout)["models"]
    assert [(m["model"], m["objective"]) for m in models] == [
        ("base", "pretrain"),
        ("hubert-base", "pretrain"),
        ("wavlm-base", "pretrain"),
    ]
    rows = {r.model: r for r in load_results([Path(MODELS_CSV)]) if r.seconds == 5.5}
    for m in models:  # each figure is its row's, at 5.5 s
        row = rows[m["model"]]
        assert m["parameters"] * 4 == row.param_bytes and m["act_mem_bytes"] == row.act_mem_bytes
        assert m["sec_per_batch"] == row.sec_per_batch_median
    table = run_cli_in_process("compare", MODELS_CSV, "--format", "md")
    assert TITLE in table.stdout and "| hubert-base | pretrain | Test Board | 94.50 |" in table.stdout


def test_report_sets_the_models_side_by_side(tmp_path):
    # the 5.5 s rows alone: one length, so no length figures to draw (they cost seconds and are not tested here)
    lines = Path(MODELS_CSV).read_text().splitlines()
    one_length = tmp_path / "models_5.5.csv"
    one_length.write_text("\n".join([lines[0], *(line for line in lines[1:] if ",5.5," in line)]) + "\n")
    done = run_cli_in_process("report", str(one_length), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    for page in ("report.md", "report.html"):
        text = (tmp_path / page).read_text()
        assert TITLE in text and "wavlm-base" in text
    assert (tmp_path / "models.csv").read_text().splitlines()[0].startswith("model,objective,device,params (M)")


def test_a_single_model_shows_no_models_table():
    """(A report of one model is byte for byte its golden file: tests/test_command_outputs_golden.py.)"""
    small = str(DATA / "small.csv")
    assert not shows_models(load_results([Path(small)]))
    assert TITLE not in run_cli_in_process("compare", small, "--format", "md").stdout
    assert "models" not in json.loads(run_cli_in_process("compare", small, "--format", "json").stdout)


def test_two_objectives_of_one_model_are_two_rows():
    rows = [r for r in load_results([Path(MODELS_CSV)]) if r.model == "base"]
    assert not shows_models(rows)  # base pretraining alone: Table 2's
    ctc = load_results([Path(MODELS_CSV)])
    for row in ctc:
        row.objective = "ctc"  # the column another change adds; read with getattr until then
    both = rows + [r for r in ctc if r.model == "base"]
    assert shows_models(both)
    assert [(m.model, m.objective) for m in models_at_paper_config(both)] == [("base", "pretrain"), ("base", "ctc")]
