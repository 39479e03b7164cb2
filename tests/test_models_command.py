"""`w2vprof models`: every built-in model listed once, counted from shapes, in each format."""

from __future__ import annotations

import csv
import io
import json

import pytest

from conftest import run_cli_in_process
from w2vprof.models import model_names
from w2vprof.models.registry import ModelInfo, list_models
from w2vprof.report.model_views import models_view
from w2vprof.report.views import render


def test_the_view_lists_every_model_with_its_objectives_and_source():
    view = models_view(list_models(count=False))
    (table,) = view.tables
    assert [row[0] for row in table.rows] == list(model_names())
    assert view.csv is not None and view.csv.rows[0][2] == "pretrain,ctc"
    assert all(row[-1] for row in table.rows)  # every configuration names where it comes from


def test_a_model_without_ctc_shows_an_empty_ctc_cell():
    info = ModelInfo("mine", "user", ("pretrain",), 2_500_000, None, "my lab")
    view = models_view([info])
    assert view.tables[0].rows == [["mine", "user", "pretrain", "2.50", "", "my lab"]]
    assert render(view, "csv").splitlines()[1] == "mine,user,pretrain,2500000,,my lab"


@pytest.mark.integration  # counts every model's parameters on the meta device (seconds of CPU)
def test_models_command_counts_from_shapes_in_csv_and_json():
    result = run_cli_in_process("models", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in csv.DictReader(io.StringIO(result.stdout))}
    assert set(rows) == set(model_names())
    assert int(rows["hubert-base"]["parameters"]) == pytest.approx(94.594e6, rel=0.005)  # torchaudio's builder
    assert int(rows["xlsr-2b"]["parameters"]) > 2e9
    as_json = json.loads(run_cli_in_process("models", "--format", "json").stdout)
    assert [row["name"] for row in as_json] == list(model_names())


def test_models_command_refuses_an_unknown_format():
    result = run_cli_in_process("models", "--format", "xml")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "w2vprof: error: unknown --format 'xml'; choose from table, md, csv, json"
    ]
