"""profile and sweep train every tiny family, pretraining and CTC (issue 21): ok records whose layer rows add up
to their totals, the CTC head's and loss's rows from the family's layer map, and a sweep over models and objectives
whose resumed run re-runs nothing."""

from __future__ import annotations

import csv

import pytest

from conftest import run_cli_in_process
from w2vprof.measure.engine import ProfileConfig, profile_configuration
from w2vprof.records import read_layers_csv, read_results_csv

pytestmark = pytest.mark.integration


def _check_rows_add_up(record, layers) -> None:
    assert record.status == "ok", record.error
    assert layers and record.fwd_flops and record.bwd_flops and record.train_flops
    assert sum(layer.fwd_flops for layer in layers) == record.fwd_flops
    assert sum(layer.bwd_flops for layer in layers) == record.bwd_flops
    assert sum(layer.act_mem_bytes for layer in layers) == record.act_mem_bytes
    assert sum(layer.params for layer in layers) * 4 == record.param_bytes  # fp32 weights


@pytest.mark.parametrize("model", ["hubert-tiny", "wavlm-tiny"])
def test_profile_pretrains_the_tiny_masked_prediction_models(model):
    config = ProfileConfig(model=model, batch=1, seconds=1.0, repeats=1, device="cpu", calibrate="off")
    result = profile_configuration(config)
    _check_rows_add_up(result.record, result.layers)
    assert result.record.objective == "pretrain" and result.record.model == model
    assert result.record.masked_fraction and 0 < result.record.masked_fraction < 1
    names = [layer.layer for layer in result.layers]
    assert "transformer.0" in names and not any(name.startswith("ctc") for name in names)


def test_profile_of_tiny_ctc_writes_the_head_and_loss_rows(tmp_path):
    out = tmp_path / "ctc"
    run = run_cli_in_process(
        "profile", "--model", "tiny", "--objective", "ctc", "--batch", "2", "--seconds", "1", "--repeats", "1",
        "--layer-repeats", "0", "--out", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "objective" in run.stdout and "ctc" in run.stdout
    (record,) = read_results_csv(out / "results.csv")
    layers = read_layers_csv(out / "layers.csv")
    _check_rows_add_up(record, layers)
    assert record.objective == "ctc" and record.masked_fraction is None
    kinds = {layer.layer: layer.kind for layer in layers}
    assert [name for name in kinds if name.startswith("ctc_head.")] == ["ctc_head.0", "ctc_head.1", "ctc_head.2"]
    assert kinds["ctc_lin"] == "head" and kinds["ctc_loss"] == "loss"
    head = [layer for layer in layers if layer.kind == "head"]
    assert all(layer.params > 0 and layer.fwd_flops > 0 and layer.bwd_flops > 0 for layer in head)
    with open(out / "results.csv", newline="") as handle:
        assert next(csv.reader(handle))[-1] == "objective"


def test_sweep_over_tiny_families_and_objectives_runs_every_row_and_resumes_nothing(tmp_path):
    out = tmp_path / "r.csv"
    args = [
        "sweep", "--model", "tiny,hubert-tiny,wavlm-tiny", "--objective", "pretrain,ctc", "--seconds", "1",
        "--batch", "1", "--warmup", "0", "--repeats", "1", "--no-calibrate", "--layer-repeats", "0",
        "--device", "cpu", "--out", str(out), "--quiet",
    ]  # fmt: skip
    first = run_cli_in_process(*args)
    assert first.returncode == 0, first.stderr
    rows = read_results_csv(out)
    assert sorted((r.model, r.objective) for r in rows) == sorted(
        (model, objective) for model in ("tiny", "hubert-tiny", "wavlm-tiny") for objective in ("pretrain", "ctc")
    )
    assert all(r.status == "ok" and r.train_flops for r in rows), [(r.model, r.objective, r.error) for r in rows]
    assert len({r.layers_file for r in rows}) == len(rows)  # each configuration's layer rows in a file of its own
    resumed = run_cli_in_process(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "ran 0 of 6 configurations" in resumed.stdout and "6 were already in the file" in resumed.stdout
    assert read_results_csv(out) == rows
