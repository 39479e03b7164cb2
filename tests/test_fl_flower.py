"""Flower end to end: a 2-round simulation through the CLI and the deployment files. Skipped without flwr.
The local deployment (SuperLink + SuperNodes + flwr run on 127.0.0.1, over TLS) is tested in test_fl_tls.py."""

from __future__ import annotations

import json
import math

import pytest

flwr = pytest.importorskip("flwr")

from typer.testing import CliRunner

from conftest import run_cli_in_process
from w2vprof.cli.main import app
from w2vprof.fl.records import read_clients_csv, read_rounds_csv

# Small enough for 2 CPU cores: tiny model, 3 clients of 2 short generated utterances, 4 held-out utterances.
SMALL = ["--model", "tiny", "--rounds", "2", "--utterances-per-client", "2", "--validation-utterances", "4"]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("fl") / "loss-run"
    result = CliRunner().invoke(
        app,
        ["fl", "simulate", "--out", str(out), "--clients", "3", "--aggregation", "loss", *SMALL],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.mark.integration
def test_simulation_writes_every_round_and_every_client(simulated):
    out, output = simulated
    rounds = read_rounds_csv(out / "rounds.csv")
    assert [r.round for r in rounds] == [0, 1, 2]  # round 0: the initial model, validation only
    assert all(r.validation_loss is not None and math.isfinite(r.validation_loss) for r in rounds)
    assert [r.participants for r in rounds[1:]] == [3, 3] and rounds[1].aggregation == "loss:exp(T=1)"
    clients = read_clients_csv(out / "clients.csv")
    assert sorted((c.round, c.partition_id) for c in clients) == [(r, p) for r in (1, 2) for p in range(3)]
    for c in clients:
        assert c.status == "ok" and c.peak_rss_bytes > 0 and c.client_sec > 0 and c.train_sec > 0
        assert c.cpu_sec > 0 and c.examples == 2 and c.steps == 1
        assert c.payload_received_bytes > 0 and c.payload_sent_bytes == c.payload_received_bytes
        assert c.peak_mem_source in ("vmhwm-reset", "vmhwm-process", "ru_maxrss-process")
    for round_ in (1, 2):
        assert sum(c.aggregation_weight for c in clients if c.round == round_) == pytest.approx(1.0)
    assert "round   2" in output and (out / "corpus" / "validated.tsv").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["aggregation"] == "loss" and run["flwr_version"] == flwr.__version__


@pytest.mark.integration
def test_simulate_refuses_to_overwrite_a_run(simulated):
    out, _ = simulated
    result = CliRunner().invoke(app, ["fl", "simulate", "--out", str(out), *SMALL])
    assert result.exit_code != 0 and "already holds rounds.csv" in str(result.exception)


@pytest.mark.integration
def test_report_plots_and_compares_with_a_profile(simulated, tmp_path):
    from w2vprof.records import RESULT_COLUMNS, ResultRecord, write_records_csv

    out, _ = simulated
    profile = tmp_path / "results.csv"
    write_records_csv(
        profile,
        [
            ResultRecord(
                model="tiny",
                batch=4,
                seconds=2.0,
                precision="fp32",
                device="cpu",
                status="ok",
                sec_per_batch_median=0.5,
            )
        ],
        RESULT_COLUMNS,
    )
    result = CliRunner().invoke(
        app,
        ["fl", "report", str(out), "--out", str(tmp_path / "plots"), "--profile", str(profile)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "plots" / "validation-loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "plots" / f"client-cost-{out.name}.png").exists()
    # 2 utterances per client, batch 4: ceil(2 / 4) = 1 batch x 0.5 s = 0.500 s predicted per local epoch
    assert "predicted epoch 0.500 s (ceil(2/4) x 0.5000 s/batch)" in result.output


def test_deploy_config_writes_a_valid_flower_app(tmp_path):
    from flwr.common.config import validate_config

    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    result = CliRunner().invoke(
        app,
        [
            "fl",
            "deploy-config",
            "--out",
            str(tmp_path / "dep"),
            "--superlink",
            "10.0.0.5:9093",
            "--node",
            "jetson=/data/client_000.tsv,/data/clips",
            "--node",
            "pi=/data/client_001.tsv",
            "--validation",
            "/data/heldout.tsv",
            "--rounds",
            "5",
            "--aggregation",
            "loss",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    config = tomllib.loads((tmp_path / "dep" / "flower-app" / "pyproject.toml").read_text())
    valid, errors, _ = validate_config(config, check_module=False)
    assert valid, errors
    assert config["tool"]["flwr"]["app"]["components"]["clientapp"] == "w2vprof.fl.client_app:app"
    run_config = config["tool"]["flwr"]["app"]["config"]
    assert (run_config["clients"], run_config["rounds"], run_config["aggregation"]) == (2, 5, "loss")
    assert config["project"]["dependencies"] == []  # nothing to install at run time
    assert 'partition-path="/data/client_000.tsv" clips-dir="/data/clips"' in result.output
    assert "--superlink 10.0.0.5:9093" in result.output and "flwr run" in result.output
    assert 'address = "10.0.0.5:9093"' in (tmp_path / "dep" / "flwr-home" / "config.toml").read_text()


@pytest.mark.parametrize(
    "node, message",
    [
        ("nopath", "--node must look like NAME=PARTITION_PATH[,CLIPS_DIR], got 'nopath'"),
        ('a=/data/"x".tsv', "--node 'a=/data/\"x\".tsv': quotes and newlines cannot travel in a Flower node config"),
    ],
)
def test_deploy_config_bad_node_is_one_line(tmp_path, node, message):
    from w2vprof.errors import SettingError
    from w2vprof.fl.deploy import parse_node

    with pytest.raises(SettingError) as raised:  # the library names its setting; the CLI shows it as the flag
        parse_node(node)
    assert raised.value.setting == "node"
    result = run_cli_in_process(
        "fl", "deploy-config", "--out", str(tmp_path), "--superlink", "h:1", "--node", node, "--validation", "v"
    )
    assert result.returncode == 2
    assert result.stderr == f"w2vprof: error: {message}\n", result.stderr
