"""Federated pretraining of another family through the model-family interface: HuBERT's tiny model, two rounds."""

from __future__ import annotations

import math

import pytest

from conftest import run_cli_in_process
from w2vprof.fl.records import read_clients_csv, read_rounds_csv
from w2vprof.fl.settings import FlSettings


@pytest.mark.integration
def test_simulate_hubert_tiny_two_rounds_with_falling_validation_loss(tmp_path):
    """3 clients of 2 short generated utterances, 4 held-out utterances (as tests/test_fl_flower.py's run)."""
    pytest.importorskip("flwr")
    out = tmp_path / "hubert-run"
    small = ["--rounds", "2", "--utterances-per-client", "2", "--validation-utterances", "4", "--clients", "3"]
    result = run_cli_in_process("fl", "simulate", "--model", "hubert-tiny", "--out", str(out), *small)
    assert result.returncode == 0, result.stderr
    rounds = read_rounds_csv(out / "rounds.csv")
    assert [r.round for r in rounds] == [0, 1, 2]
    losses = [r.validation_loss for r in rounds]
    assert all(loss is not None and math.isfinite(loss) for loss in losses)
    assert losses[2] < losses[1] < losses[0], losses
    # the masked-prediction term is logged where wav2vec 2.0's contrastive term is
    assert all(r.validation_contrastive_loss is not None for r in rounds)
    clients = read_clients_csv(out / "clients.csv")
    assert len(clients) == 6 and all(c.status == "ok" and c.train_contrastive_loss is not None for c in clients)


def test_an_unknown_model_lists_the_families():
    with pytest.raises(Exception, match="hubert-tiny"):
        FlSettings(model="nosuch")
