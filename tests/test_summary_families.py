"""`w2vprof summary` for every model family and a user's factory: the family's name in the title, from shapes."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli_in_process

EXAMPLE_FACTORY = "tests.model_family_example:conformer_family"


@pytest.mark.parametrize(
    ("model", "title"),
    [("hubert-tiny", "HuBERT hubert-tiny"), ("wavlm-tiny", "WavLM wavlm-tiny"), ("tiny", "wav2vec 2.0 tiny")],
)
def test_summary_title_names_the_family(model, title):
    done = run_cli_in_process("summary", "--model", model, "--seconds", "1", "--format", "md")
    assert done.returncode == 0, done.stderr
    assert title in done.stdout
    assert "| **total** |" in done.stdout


def test_summary_of_a_ctc_model_counts_its_head():
    pretrain = run_cli_in_process("summary", "--model", "hubert-tiny", "--seconds", "1", "--format", "json")
    ctc = run_cli_in_process(
        "summary", "--model", "hubert-tiny", "--seconds", "1", "--format", "json", "--objective", "ctc"
    )
    assert pretrain.returncode == ctc.returncode == 0, pretrain.stderr + ctc.stderr
    heads = {key: {row["module"]: row for row in json.loads(run.stdout)} for key, run in [("p", pretrain), ("c", ctc)]}
    # the same encoder; the CTC head (three linear blocks of 64, the 32-character layer) is not HuBERT's
    assert heads["p"]["cnn_encoder"]["params"] == heads["c"]["cnn_encoder"]["params"]
    assert heads["p"]["heads"]["params"] != heads["c"]["heads"]["params"]
    table = run_cli_in_process("summary", "--model", "hubert-tiny", "--seconds", "1", "--objective", "ctc")
    assert "(CTC fine-tuning)" in table.stdout


def test_summary_of_a_users_factory_through_the_cli():
    done = run_cli_in_process("summary", "--model", EXAMPLE_FACTORY, "--seconds", "1", "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert rows[-1]["module"] == "total" and rows[-1]["params"] > 0 and rows[-1]["inference_flops"] > 0
    assert {row["model"] for row in rows} == {EXAMPLE_FACTORY}


@pytest.mark.integration  # about 5 s of CPU: 48 layers of 1920 on the meta device
def test_summary_of_xlsr_2b_from_shapes():
    """Two billion parameters (8.7 GB in fp32) counted on the meta device: nothing is allocated."""
    done = run_cli_in_process("summary", "--model", "xlsr-2b", "--seconds", "1", "--format", "json")
    assert done.returncode == 0, done.stderr
    total = json.loads(done.stdout)[-1]
    assert total["module"] == "total" and total["params"] > 2e9


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--model", "nosuch"), "hubert-base"),  # an unknown model lists the known ones
        (("--model", "base", "--objective", "finetune"), "pretrain, ctc"),
        (("--model", EXAMPLE_FACTORY, "--objective", "pretrain"), "offers ctc"),
        (("--model", "nosuch.module:f"), "nosuch.module"),
    ],
)
def test_summary_bad_model_or_objective_is_one_line(args, says):
    done = run_cli_in_process("summary", *args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr
