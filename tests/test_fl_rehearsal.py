"""fl without Flower: the run-folder check shared by the CLI and the ServerApp, the local rehearsal's node
plan, and the federated plots (drawn from rows, written atomically)."""

from __future__ import annotations

from pathlib import Path

import pytest

from w2vprof.errors import BadInput
from w2vprof.fl.records import ClientRoundRecord, RoundRecord, RunCurves, check_new_run_folder

PNG = b"\x89PNG\r\n\x1a\n"


def _run(folder: Path) -> RunCurves:
    rounds = [RoundRecord(round=r, aggregation="fedavg", validation_loss=4.0 - r) for r in range(3)]
    clients = [
        ClientRoundRecord(round=r, client=f"c{c}", client_sec=1.0 + c, peak_rss_bytes=(c + 1) * 10**8)
        for r in (1, 2)
        for c in range(3)
    ]
    return RunCurves(folder, rounds, clients)


def test_a_run_never_writes_into_another_runs_folder(tmp_path):
    check_new_run_folder(tmp_path / "new")  # nothing there yet: fine
    (tmp_path / "rounds.csv").write_text("round\n")
    with pytest.raises(BadInput, match="already holds rounds.csv of another run"):
        check_new_run_folder(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(BadInput, match="is not a folder"):
        check_new_run_folder(tmp_path / "file")


def test_the_server_app_uses_the_same_check():
    """Flower's `flwr run` path must refuse an old run folder with the same BadInput, not a RuntimeError."""
    source = (Path(__file__).parent.parent / "src" / "w2vprof" / "fl" / "server_app.py").read_text()
    assert "check_new_run_folder(out)" in source and "RuntimeError" not in source


def test_local_nodes_need_one_partition_each(tmp_path):
    from w2vprof.fl.rehearsal import local_nodes
    from w2vprof.fl.settings import FlSettings

    for name in ("client_000.tsv", "client_001.tsv", "heldout.tsv"):
        (tmp_path / name).write_text("client_id\tpath\n")
    settings = FlSettings(partitions=str(tmp_path), clips_dir="/clips")
    nodes = local_nodes(settings, 2)
    assert [(n.name, Path(n.partition_path).name, n.clips_dir) for n in nodes] == [
        ("node-0", "client_000.tsv", "/clips"),
        ("node-1", "client_001.tsv", "/clips"),
    ]
    assert len({n.port for n in nodes}) == 2  # two SuperNodes on one host need two ports
    with pytest.raises(BadInput, match="holds 2 partitions; 3 nodes need one each"):
        local_nodes(settings, 3)


@pytest.mark.integration
def test_federated_plots_draw_and_skip_what_has_no_data(tmp_path):
    from w2vprof.fl.plots import client_cost_png, validation_loss_png

    run = _run(tmp_path / "run")
    assert validation_loss_png([run])[:8] == PNG and client_cost_png(run)[:8] == PNG
    empty = RunCurves(tmp_path / "empty", [RoundRecord(round=0, aggregation="fedavg")], [])
    assert validation_loss_png([empty]) is None and client_cost_png(empty) is None
    assert run.label == "fedavg (run)"


@pytest.mark.integration
def test_write_plots_writes_each_png_whole(tmp_path):
    from dataclasses import fields

    from w2vprof.fl.plots import write_plots
    from w2vprof.records import rows_to_csv_text

    run = _run(tmp_path / "run")
    run.folder.mkdir()
    (run.folder / "rounds.csv").write_text(rows_to_csv_text(run.rounds, [f.name for f in fields(RoundRecord)]))
    (run.folder / "clients.csv").write_text(rows_to_csv_text(run.clients, [f.name for f in fields(ClientRoundRecord)]))
    written = write_plots([run.folder], tmp_path / "plots")
    assert [p.name for p in written] == ["validation-loss.png", "client-cost-run.png"]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["client-cost-run.png", "validation-loss.png"]
    assert all(p.read_bytes()[:8] == PNG for p in written)
