"""fl simulate --fleet: each simulated client stands for a measured fleet device, each round gets its virtual time on
that fleet, and updates the fleet would lose (deadline, memory, unreachable) get weight 0 in the aggregate.

Everything but the last test works on the pieces (no Flower simulation): the dealing of fleet lines, a client's
verdict, a round's virtual time, the pricing from a results file, the strategy's weights on fake replies, the files.
The last test is ONE small real `fl simulate --fleet` (integration) and reports it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import run_cli_in_process
from w2vprof.errors import BadInput
from w2vprof.fl.records import (
    FleetLineRecord,
    FleetRun,
    RoundRecord,
    read_clients_csv,
    read_fleet_json,
    read_rounds_csv,
    write_fleet_json,
)
from w2vprof.fl.settings import FlSettings
from w2vprof.fl.virtual_fleet import (
    ClientVerdict,
    FleetOptions,
    assign_lines,
    estimate_mixes,
    judge_client,
    plan_fleet,
    read_fleet_inputs,
    round_virtual_sec,
)
from w2vprof.records import RESULT_COLUMNS, ResultRecord, write_records_csv

FAST, SLOW, SMALL = "Fast board", "Slow board", "Small board"


def _results(folder: Path, seconds_per_batch: dict[str, float], oom: tuple[str, ...] = ()) -> Path:
    """A results file with one made-up tiny, batch 4, 2 s, fp32 row per device (oom rows for `oom`)."""
    config = {"model": "tiny", "batch": 4, "seconds": 2.0, "precision": "fp32"}
    rows = [
        ResultRecord(**config, device_name=name, status="ok", sec_per_batch_median=sec)
        for name, sec in seconds_per_batch.items()
    ]
    rows += [ResultRecord(**config, device_name=name, status="oom") for name in oom]
    path = folder / "results.csv"
    write_records_csv(path, rows, RESULT_COLUMNS)
    return path


def _fleet(lines: list[tuple], deadline: float | None = None, assignment: tuple[int, ...] = ()) -> FleetRun:
    """A priced fleet: (device, count, sec_per_batch, excluded, availability, communication_sec) per line."""
    records = tuple(
        FleetLineRecord(
            line=i + 2,
            device=device,
            count=count,
            availability=availability,
            excluded=excluded,
            sec_per_batch=sec,
            communication_sec=transfer,
        )
        for i, (device, count, sec, excluded, availability, transfer) in enumerate(lines)
    )
    return FleetRun("fleet.csv", 2.0, deadline, None, 2, records, assignment or tuple(range(len(records))))


# -- which device a client stands for ---------------------------------------------------------------------------
def test_lines_are_dealt_in_proportion_to_their_counts_and_shuffled_by_the_seed():
    assert Counter(assign_lines([50, 30, 20], 100, seed=0)) == {0: 50, 1: 30, 2: 20}  # the whole fleet: its counts
    for clients in range(1, 11):  # fewer clients: no line beyond its share rounded up
        dealt = Counter(assign_lines([5, 3, 2], clients, seed=1))
        assert all(dealt[g] <= math.ceil(count * clients / 10) for g, count in enumerate((5, 3, 2)))
    assert sorted(assign_lines([1, 1], 4, seed=0)) == [0, 0, 1, 1]  # more clients than the fleet: it repeats
    assert assign_lines([3, 3], 6, seed=7) == assign_lines([3, 3], 6, seed=7)
    assert len({tuple(assign_lines([3, 3], 6, seed=s)) for s in range(10)}) > 1  # the seed decides who is which


# -- one client, one round --------------------------------------------------------------------------------------
def test_a_client_s_virtual_seconds_are_its_device_s_batches_and_transfers():
    fleet = _fleet([(FAST, 1, 0.5, "", 1.0, 3.0), (SLOW, 1, 5.0, "", 1.0, None)], deadline=10.0)
    assert judge_client(fleet, 1, 0, steps=4, seed=0) == ClientVerdict(FAST, 0.5 * 4 + 3.0, "")
    assert judge_client(fleet, 1, 1, steps=1, seed=0) == ClientVerdict(SLOW, 5.0, "")
    assert judge_client(fleet, 1, 1, steps=3, seed=0) == ClientVerdict(SLOW, 15.0, "deadline")  # 15 s > 10 s


def test_a_device_that_cannot_train_leaves_its_clients_out_before_they_train():
    fleet = _fleet([(SMALL, 1, None, "oom", 1.0, None), (SLOW, 1, None, "unsupported", 1.0, None)])
    assert judge_client(fleet, 1, 0, steps=2, seed=0) == ClientVerdict(SMALL, None, "memory")
    assert judge_client(fleet, 1, 1, steps=2, seed=0) == ClientVerdict(SLOW, None, "unsupported")


def test_a_client_is_unreachable_in_about_its_line_s_share_of_rounds_the_same_ones_every_run():
    fleet = _fleet([(FAST, 1, 0.5, "", 0.25, None)])
    verdicts = [judge_client(fleet, r, 0, steps=1, seed=3).dropped for r in range(1, 401)]
    assert verdicts == [judge_client(fleet, r, 0, steps=1, seed=3).dropped for r in range(1, 401)]
    assert 0.65 < verdicts.count("unavailable") / 400 < 0.85  # reachable in a quarter of the rounds
    assert set(verdicts) == {"", "unavailable"}


def test_a_round_lasts_for_its_slowest_client_or_until_the_deadline_that_cut_one():
    fleet = _fleet([(FAST, 1, 0.5, "", 1.0, None)], deadline=4.0)
    made_it = [ClientVerdict(FAST, 1.0, ""), ClientVerdict(FAST, 3.0, ""), ClientVerdict(SMALL, None, "memory")]
    assert round_virtual_sec(fleet, made_it) == 3.0
    assert round_virtual_sec(fleet, made_it + [ClientVerdict(SLOW, 9.0, "deadline")]) == 4.0
    assert round_virtual_sec(fleet, [ClientVerdict(SMALL, None, "memory")]) is None  # nobody trained


# -- pricing from results files ------------------------------------------------------------------------------
def test_the_fleet_is_priced_from_the_results_with_fl_estimate_s_lookup(tmp_path):
    results = _results(tmp_path, {FAST: 0.5, SLOW: 5.0}, oom=(SMALL,))
    fleet_csv = tmp_path / "fleet.csv"
    fleet_csv.write_text(f"device,count,uplink_mbps\n{FAST},2,8\n{SLOW},1,\n{SMALL},1,\n")
    settings = FlSettings(model="tiny", clients=8, rounds=3, batch=4, seed=0)
    inputs = read_fleet_inputs(FleetOptions(str(fleet_csv), (str(results),), deadline=2.0))
    plan = plan_fleet(inputs, settings)
    assert [(line.device, line.sec_per_batch, line.excluded) for line in plan.lines] == [
        (FAST, 0.5, ""),
        (SLOW, 5.0, ""),
        (SMALL, None, "oom"),
    ]
    assert plan.seconds == 2.0 and plan.deadline_sec == 2.0 and plan.update_bytes > 0
    # the upload of one model copy at 8 Mbit/s, no download link given: bytes x 8 / 8e6
    assert plan.lines[0].communication_sec == pytest.approx(plan.update_bytes * 8 / 8e6)
    assert Counter(plan.assignment) == {0: 4, 1: 2, 2: 2}  # 8 clients from a 2:1:1 fleet
    mixes = {mix.mix: mix for mix in estimate_mixes(plan, inputs, settings, samples_per_client=8).mixes}
    assert set(mixes) == {"fleet", FAST, SLOW, SMALL}
    fast = mixes[FAST]  # 8 samples, batch 4: 2 batches x 0.5 s + the upload, every round the same
    assert fast.round_sec_mean == pytest.approx(2 * 0.5 + plan.lines[0].communication_sec)
    assert fast.days_mean == pytest.approx(3 * fast.round_sec_mean / 86_400)
    assert mixes[SLOW].updates_per_round == 0 and mixes[SLOW].round_sec_mean == 2.0  # 10 s > 2 s: all cut
    assert mixes[SMALL].days_mean is None and "oom" in mixes[SMALL].note


def test_fleet_options_name_their_settings(tmp_path):
    results = _results(tmp_path, {FAST: 0.5})
    with pytest.raises(BadInput, match="^deadline must be a positive number"):
        read_fleet_inputs(FleetOptions("fleet.csv", (str(results),), deadline=0.0))
    with pytest.raises(BadInput, match="^results must be given with fleet"):
        read_fleet_inputs(FleetOptions("fleet.csv", ()))
    (tmp_path / "fleet.csv").write_text(f"device,count\n{SMALL},1\n")
    with pytest.raises(BadInput, match="unknown device 'Small board'"):
        read_fleet_inputs(FleetOptions(str(tmp_path / "fleet.csv"), (str(results),)))


@pytest.mark.parametrize(
    "args, line",
    [
        (["--deadline", "3"], "w2vprof: error: --deadline is only for a fleet run: give --fleet too"),
        (["--fleet", "f.csv"], "w2vprof: error: results must be given with --fleet: the results CSVs"),
        (["--fleet", "f.csv", "r.csv", "--seconds", "-2"], "w2vprof: error: --seconds must be a positive number"),
    ],
)
def test_cli_fleet_mistakes_are_one_line_naming_the_flag(tmp_path, args, line):
    pytest.importorskip("flwr")
    result = run_cli_in_process("fl", "simulate", "--out", str(tmp_path / "run"), *args)
    assert result.returncode == 2 and result.stderr.startswith(line) and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "run").exists()


# -- the aggregate ------------------------------------------------------------------------------------------------
def _reply(node: int, partition: int, value: float, examples: int = 2):
    """What aggregate_train reads of a Flower reply: weights all `value`, the client's measurements, one step."""
    import numpy as np
    from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord

    measured = {"client": f"partition-{partition}", "partition_id": partition, "steps": 1, "client_sec": 1.0}
    content = SimpleNamespace(
        metric_records={"metrics": MetricRecord({"num-examples": examples, "train-loss": 4.0 + partition})},
        config_records={"measurements": ConfigRecord(measured)},
        array_records={"arrays": ArrayRecord({"w": Array(np.full(3, value, dtype=np.float32))})},
    )
    return SimpleNamespace(metadata=SimpleNamespace(src_node_id=node), has_error=lambda: False, content=content)


@pytest.mark.parametrize("aggregation", ["fedavg", "loss"])
def test_a_cut_client_s_update_has_weight_zero_in_the_round_s_aggregate(tmp_path, aggregation):
    pytest.importorskip("flwr")
    from w2vprof.fl.strategy import W2vprofStrategy

    # partitions 0, 1: fast (0.5 s); 2: slow (5 s > the 2 s deadline); 3: cannot hold the model
    fleet = _fleet(
        [(FAST, 2, 0.5, "", 1.0, None), (SLOW, 1, 5.0, "", 1.0, None), (SMALL, 1, None, "oom", 1.0, None)],
        deadline=2.0,
        assignment=(0, 0, 1, 2),
    )
    settings = FlSettings(clients=4, aggregation=aggregation)
    strategy = W2vprofStrategy(settings, tmp_path, model=None, validation=[], fleet=fleet)
    replies = [_reply(10 + p, p, value) for p, value in enumerate((1.0, 3.0, 1000.0, -1000.0))]
    arrays, metrics = strategy.aggregate_train(1, replies)

    rows = {row.partition_id: row for row in read_clients_csv(tmp_path / "clients.csv")}
    assert (rows[2].dropped, rows[2].aggregation_weight, rows[2].virtual_sec) == ("deadline", 0.0, 5.0)
    assert (rows[3].dropped, rows[3].aggregation_weight, rows[3].virtual_sec) == ("memory", 0.0, None)
    assert [rows[p].fleet_device for p in range(4)] == [FAST, FAST, SLOW, SMALL]
    kept = rows[0].aggregation_weight, rows[1].aggregation_weight
    assert sum(kept) == pytest.approx(1.0) and min(kept) > 0
    # the average holds nothing of the cut updates (1000 and -1000 would move it far from [1, 3])
    averaged = arrays["w"].numpy()
    assert averaged == pytest.approx([kept[0] * 1.0 + kept[1] * 3.0] * 3)
    assert metrics["participants"] == 2


def test_without_a_fleet_every_update_counts_as_before(tmp_path):
    pytest.importorskip("flwr")
    from w2vprof.fl.strategy import W2vprofStrategy

    strategy = W2vprofStrategy(FlSettings(clients=2), tmp_path, model=None, validation=[])
    arrays, _ = strategy.aggregate_train(1, [_reply(10, 0, 1.0), _reply(11, 1, 3.0)])
    assert arrays["w"].numpy() == pytest.approx([2.0] * 3)
    rows = read_clients_csv(tmp_path / "clients.csv")
    assert [(r.fleet_device, r.virtual_sec, r.dropped, r.aggregation_weight) for r in rows] == [("", None, "", 0.5)] * 2


# -- the files ---------------------------------------------------------------------------------------------------
def test_files_of_schema_1_still_read(tmp_path):
    version_1 = [f.name for f in fields(RoundRecord)][: [f.name for f in fields(RoundRecord)].index("schema_version")]
    (tmp_path / "rounds.csv").write_text(
        ",".join(version_1 + ["schema_version"]) + "\n1,fedavg,2,0,,3.5" + "," * 8 + "1\n"
    )
    (rounds,) = read_rounds_csv(tmp_path / "rounds.csv")
    assert rounds.validation_loss == 3.5 and rounds.virtual_round_sec is None and rounds.dropped_deadline is None
    (tmp_path / "clients.csv").write_text("round,client,client_sec,device,schema_version\n1,a,2.5,cpu,1\n")
    (client,) = read_clients_csv(tmp_path / "clients.csv")
    assert (client.device, client.fleet_device, client.dropped, client.virtual_sec) == ("cpu", "", "", None)


def test_fleet_json_round_trips_and_a_broken_one_is_bad_input(tmp_path):
    fleet = _fleet([(FAST, 2, 0.5, "", 0.9, 1.5)], deadline=3.0, assignment=(0, 0))
    write_fleet_json(tmp_path, fleet)
    assert read_fleet_json(tmp_path / "fleet.json") == fleet
    data = json.loads((tmp_path / "fleet.json").read_text())
    for broken in ({**data, "assignment": [0, 5]}, {**data, "lines": "x"}, [1, 2]):
        (tmp_path / "fleet.json").write_text(json.dumps(broken))
        with pytest.raises(BadInput, match="fleet.json"):
            read_fleet_json(tmp_path / "fleet.json")


# -- one real run (integration) --------------------------------------------------------------------------------
@pytest.mark.integration
def test_simulate_on_a_fleet_cuts_the_slow_device_and_still_learns(tmp_path):
    """Tiny, 3 clients of 2 short utterances, 2 rounds: two fast boards and one 10x slower, cut by the deadline."""
    pytest.importorskip("flwr")
    results = _results(tmp_path, {FAST: 0.5, SLOW: 5.0})
    (tmp_path / "fleet.csv").write_text(f"device,count\n{FAST},2\n{SLOW},1\n")
    out = tmp_path / "run"
    small = ["--model", "tiny", "--rounds", "2", "--utterances-per-client", "2", "--validation-utterances", "4"]
    fleet = ["--fleet", str(tmp_path / "fleet.csv"), str(results), "--deadline", "2"]
    result = run_cli_in_process("fl", "simulate", "--out", str(out), "--clients", "3", *small, *fleet)
    assert result.returncode == 0, result.stderr

    rounds = read_rounds_csv(out / "rounds.csv")
    assert rounds[-1].validation_loss < rounds[0].validation_loss  # the fast clients' updates still train it
    for record in rounds[1:]:  # the slow board's 5 s pass the 2 s deadline: the round waits until then
        assert (record.virtual_round_sec, record.dropped_deadline, record.dropped_memory) == (2.0, 1, 0)
        assert record.participants == 2
    clients = read_clients_csv(out / "clients.csv")
    slow = [c for c in clients if c.fleet_device == SLOW]
    assert len(slow) == 2 and all(c.dropped == "deadline" and c.aggregation_weight == 0 for c in slow)
    assert all(c.virtual_sec == 0.5 * c.steps for c in clients if c.fleet_device == FAST)
    assert "on the fleet 2.0 s" in result.stdout and "left out: 1 deadline" in result.stdout

    report = run_cli_in_process("fl", "report", str(out), "--out", str(tmp_path / "plots"))
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "plots" / "fleet-timeline-run.png").read_bytes()[:4] == b"\x89PNG"
    assert "Slow board only" in report.stdout and "whole fleet" in report.stdout


def test_a_round_whose_every_update_is_cut_keeps_the_global_model(tmp_path):
    pytest.importorskip("flwr")
    from w2vprof.fl.strategy import W2vprofStrategy

    fleet = _fleet([(SLOW, 2, 5.0, "", 1.0, None)], deadline=1.0, assignment=(0, 0))
    strategy = W2vprofStrategy(FlSettings(clients=2), tmp_path, model=None, validation=[], fleet=fleet)
    arrays, metrics = strategy.aggregate_train(1, [_reply(10, 0, 1.0), _reply(11, 1, 3.0)])
    assert arrays is None and metrics is None  # Flower keeps the global model as it was
    rows = read_clients_csv(tmp_path / "clients.csv")
    assert [(r.dropped, r.aggregation_weight) for r in rows] == [("deadline", 0.0)] * 2
