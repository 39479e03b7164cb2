"""fl-estimate --fleet: a mixed fleet of measured devices, synchronous rounds that wait for K updates or a deadline.

The figures are checked against today's fl_estimate (one device type must give its number) and against arithmetic
done by hand on the paper's Table 2; the Monte Carlo is checked for what must hold whatever the draws.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from w2vprof.analysis.data import paper_results
from w2vprof.analysis.fl_estimate import FlSetting, fl_estimate
from w2vprof.analysis.fleet import fl_estimate_fleet
from w2vprof.analysis.fleet_io import fleet_records, parse_fleet, read_fleet
from w2vprof.analysis.fleet_pricing import FleetGroup
from w2vprof.devices.profiles import DeviceProfile
from w2vprof.errors import BadInput, SettingError
from w2vprof.records import read_results_csv, replace

DATA = Path(__file__).parent / "data"
PI, NX, AGX, A40 = "Raspberry Pi 4", "Jetson Xavier NX", "Jetson Xavier AGX", "NVIDIA A40"


def _today(device: str, setting: FlSetting | None = None):
    """Today's fl_estimate row for one paper device."""
    return next(r for r in fl_estimate(paper_results(), setting or FlSetting()) if r.device == device)


def _line(estimate, device: str):
    return next(d for d in estimate.devices if d.device == device)


# -- acceptance ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", [PI, NX, AGX, A40, "MacBook Pro 2019"])
def test_a_fleet_of_one_device_type_gives_todays_figure(device):
    today = _today(device)
    everyone = fl_estimate_fleet(paper_results(), [FleetGroup(device, 10)], FlSetting())
    assert everyone.figures.days_mean == pytest.approx(today.total_days, rel=0.01)
    assert everyone.figures.round_sec_mean == pytest.approx(today.round_hours * 3600, rel=0.01)
    # sampling 3 of 10 identical clients changes who trains, not how long a round lasts
    sampled = fl_estimate_fleet(paper_results(), [FleetGroup(device, 10)], FlSetting(), clients_per_round=3)
    assert sampled.figures.days_mean == pytest.approx(today.total_days, rel=0.01)
    assert sampled.figures.updates_per_round == 3


def test_pi_and_nx_fleet_waits_for_the_pi_until_a_deadline_cuts_it():
    rows = paper_results()
    fleet = read_fleet(DATA / "fleet_pi_nx.csv", rows)
    assert [(g.device, g.count) for g in fleet] == [(PI, 50), (NX, 50)]
    pi, nx = _today(PI), _today(NX)

    everyone = fl_estimate_fleet(rows, fleet, FlSetting())
    # every client every round: the round ends when the last Pi is done (4,875 batches x 53.26 s = 259,643 s)
    assert everyone.figures.round_sec_mean == pytest.approx(pi.round_hours * 3600, rel=1e-6)
    assert everyone.figures.round_sec_p5 == everyone.figures.round_sec_p95  # nothing random when all train
    assert _line(everyone, PI).slowest_share == 1 and _line(everyone, NX).slowest_share == 0
    assert everyone.figures.updates_per_round == 100 and everyone.figures.lost_updates_total == 0

    cut = fl_estimate_fleet(
        rows, fleet, FlSetting(), clients_per_round=20, over_commit=1.5, deadline_s=nx.round_hours * 3600
    )
    f = cut.figures
    assert f.sampled_per_round == 30
    assert f.days_mean == pytest.approx(nx.total_days, rel=0.05)
    assert f.days_mean < pi.total_days / 10
    # no Pi update enters an aggregate; in a round the deadline ends every sampled Pi is lost and counted (in the
    # rare round with 20 NX among the 30 sampled, the K-th arrival ends it and the Pis are surplus, not lost)
    assert _line(cut, PI).updates_per_round == 0
    pi_lost, pi_sampled = _line(cut, PI).lost_updates_per_round, _line(cut, PI).sampled_per_round
    assert 0.9 * pi_sampled < pi_lost <= pi_sampled
    assert _line(cut, NX).lost_updates_per_round == 0
    assert f.lost_updates_per_round > 10  # 30 sampled from a 50/50 fleet: about 15 Pis a round
    assert f.lost_updates_total == pytest.approx(f.lost_updates_per_round * f.rounds)
    assert _line(cut, PI).slowest_share > 0.9  # most rounds still wait for a Pi, until the deadline
    assert f.short_round_share > 0.9  # 20 NX among 30 sampled is rare: most rounds aggregate fewer than K


# -- the round model -------------------------------------------------------------------------------------------
def test_same_seed_same_numbers_and_another_seed_other_draws():
    rows = paper_results()
    fleet = read_fleet(DATA / "fleet_mixed.csv", rows)
    setting = FlSetting(model_bytes=380_000_000)
    first = fl_estimate_fleet(rows, fleet, setting, clients_per_round=10, over_commit=1.3, seed=7, trials=50)
    again = fl_estimate_fleet(rows, fleet, setting, clients_per_round=10, over_commit=1.3, seed=7, trials=50)
    other = fl_estimate_fleet(rows, fleet, setting, clients_per_round=10, over_commit=1.3, seed=8, trials=50)
    assert first == again
    assert [d.sampled_per_round for d in first.devices] != [d.sampled_per_round for d in other.devices]
    f = first.figures
    assert f.round_sec_p5 <= f.round_sec_mean <= f.round_sec_p95 and f.round_sec_p5 < f.round_sec_p95
    assert f.days_mean == pytest.approx(f.round_sec_mean * f.rounds / 86_400)
    assert sum(d.slowest_share for d in first.devices) == pytest.approx(1 - f.empty_round_share)
    # sampled uniformly among the reachable: a line's share of the sample follows count x availability
    reachable = {g.device: g.count * g.availability for g in fleet}
    share = {d.device: d.sampled_per_round / f.sampled_per_round for d in first.devices}
    for device, expected in reachable.items():
        assert share[device] == pytest.approx(expected / sum(reachable.values()), abs=0.03), device


def test_communication_is_a_download_and_an_upload_over_each_line_s_links():
    rows = paper_results()
    fleet = read_fleet(DATA / "fleet_mixed.csv", rows)
    estimate = fl_estimate_fleet(rows, fleet, FlSetting(model_bytes=10**9), trials=5)
    pi = _line(estimate, PI)  # 5 Mbit/s up, 20 down: 8e9 bit / 5e6 + 8e9 bit / 20e6 = 1,600 + 400 s
    assert pi.communication_sec == pytest.approx(2000)
    assert pi.client_round_sec == pytest.approx(_today(PI).round_hours * 3600 + 2000)
    assert _line(estimate, AGX).communication_sec is None  # no links on its line: no cost, and the notes say so
    assert estimate.figures.update_bytes == 10**9
    assert any("a missing link direction costs nothing" in n for n in estimate.notes)
    # --bandwidth is the link of lines without their own
    linked = fl_estimate_fleet(rows, fleet, FlSetting(model_bytes=10**9, bandwidth_mbps=8), trials=5)
    assert _line(linked, AGX).communication_sec == pytest.approx(2 * 8e9 / 8e6)
    bare = fl_estimate_fleet(rows, [FleetGroup(NX, 3)], FlSetting(), trials=5)
    assert bare.figures.update_bytes is None and any("no communication cost" in n for n in bare.notes)


def test_update_bytes_come_from_the_rows_param_bytes():
    rows = read_results_csv(DATA / "small.csv")
    estimate = fl_estimate_fleet(
        rows, [FleetGroup("Test Board", 2, uplink_mbps=8, downlink_mbps=8)], FlSetting(samples_per_client=100), trials=3
    )
    assert estimate.figures.seconds == 4.0  # no 5.5 s rows: the longest length measured
    assert estimate.figures.update_bytes == 380_000_000  # the row's FP32 parameter bytes
    assert _line(estimate, "Test Board").communication_sec == pytest.approx(2 * 380e6 * 8 / 8e6)


def test_update_bytes_count_the_parameters_when_no_row_has_them():
    estimate = fl_estimate_fleet(paper_results(), [FleetGroup(NX, 2, uplink_mbps=100)], FlSetting(), trials=3)
    # wav2vec 2.0 base: about 95 M parameters x 4 bytes
    assert 370e6 < estimate.figures.update_bytes < 390e6


def test_energy_per_round_where_joules_per_batch_were_measured():
    rows = [replace(r, energy_j_per_batch=12.0) if r.device_name == NX else r for r in paper_results()]
    estimate = fl_estimate_fleet(
        rows, [FleetGroup(NX, 4), FleetGroup(PI, 4)], FlSetting(), clients_per_round=2, trials=20
    )
    per_client = 12.0 * 4875  # J per batch x batches of one local epoch
    assert _line(estimate, NX).energy_j_per_client_round == pytest.approx(per_client)
    assert _line(estimate, PI).energy_j_per_client_round is None
    assert estimate.figures.energy_j_per_round == pytest.approx(per_client * _line(estimate, NX).sampled_per_round)
    assert any("energy leaves out Raspberry Pi 4" in n for n in estimate.notes)
    unmeasured = fl_estimate_fleet(paper_results(), [FleetGroup(NX, 2)], FlSetting(), trials=2)
    assert unmeasured.figures.energy_j_per_round is None


def test_devices_that_cannot_hold_the_configuration_are_never_sampled_and_counted():
    rows = paper_results()
    fleet = [FleetGroup(PI, 30), FleetGroup(NX, 20), FleetGroup(AGX, 4), FleetGroup(A40, 3)]
    large = fl_estimate_fleet(rows, fleet, FlSetting(model="large"), clients_per_round=2, trials=20)
    assert large.figures.excluded_clients == 54 and large.figures.eligible_clients == 3
    assert _line(large, A40).sampled_per_round == 2 and large.figures.short_round_share == 0
    assert _line(large, PI).excluded == "oom" and _line(large, PI).sampled_per_round == 0
    assert _line(large, NX).excluded == "oom" and _line(large, AGX).excluded == "oom"  # AGX: OOM at batch 4 FP32
    assert large.figures.round_sec_mean == pytest.approx(_today(A40, FlSetting(model="large")).round_hours * 3600)
    assert any("Raspberry Pi 4: 30 client(s) never sampled (oom)" in n for n in large.notes)
    mixed = fl_estimate_fleet(rows, fleet, FlSetting(precision="mixed"), trials=5)
    assert _line(mixed, PI).excluded == "unsupported" and mixed.figures.clients_per_round == 27
    with pytest.raises(BadInput, match="no client of the fleet can train"):
        fl_estimate_fleet(rows, [FleetGroup(PI, 3)], FlSetting(model="large"))


def test_an_unmeasured_device_is_excluded_when_the_memory_fit_says_it_does_not_fit():
    measured = read_results_csv(DATA / "small.csv")  # Test Board: peak memory 3-9 GB at batch 4, 1-4 s
    other = [
        replace(r, device_name="Small Board", batch=8, status="ok", sec_per_batch_median=1.0)
        for r in measured
        if r.batch == 8
    ]  # known to the results, but never measured at batch 4
    rows = measured + other
    fleet = [FleetGroup("Test Board", 5), FleetGroup("Small Board", 5)]
    small = [DeviceProfile("Small Board", "edge CPU", 2.0, True, None, None, False, "test")]
    estimate = fl_estimate_fleet(rows, fleet, FlSetting(samples_per_client=100), profiles=small, trials=5)
    assert _line(estimate, "Small Board").excluded.startswith("memory fit: needs")
    assert estimate.figures.excluded_clients == 5
    roomy = [replace(small[0], memory_gb=64.0)]
    with pytest.raises(BadInput, match="Small Board: no measured time .* no memory fit rules it out"):
        fl_estimate_fleet(rows, fleet, FlSetting(samples_per_client=100), profiles=roomy)


def test_a_fleet_whose_devices_share_no_length_is_refused():
    rows = paper_results() + read_results_csv(DATA / "small.csv")
    with pytest.raises(BadInput, match="share no utterance length"):
        fl_estimate_fleet(rows, [FleetGroup("Test Board", 1), FleetGroup(NX, 1)], FlSetting())


# -- bad input ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, fragment",
    [
        ("device,count\nCray-1,3\n", "line 2: unknown device 'Cray-1'; devices in the results: "),
        ("device,count\nJetson Xavier NX,0\n", "line 2: count must be a positive whole number, got '0'"),
        ("device,count\nJetson Xavier NX,2\nRaspberry Pi 4,1.5\n", "line 3: count must be a positive whole number"),
        ("device,count,availability\nJetson Xavier NX,2,0\n", "line 2: availability must be a positive number"),
        ("device,count,availability\nJetson Xavier NX,2,1.5\n", "line 2: availability must be in (0, 1]"),
        ("device,count,uplink_mbps\nJetson Xavier NX,2,-5\n", "line 2: uplink_mbps must be a positive number"),
        ("device,count,downlink_mbps\nJetson Xavier NX,2,nan\n", "line 2: downlink_mbps must be a positive number"),
        ("device,count\nJetson Xavier NX,2,9\n", "line 2: 3 cells for 2 columns"),
        ("device,count\n", "no rows"),
        ("", "empty fleet file"),
        ("device,clients\nJetson Xavier NX,2\n", "not a fleet file (missing count)"),
        ("device,count,uplink\nJetson Xavier NX,2,5\n", "not a fleet file (unknown column 'uplink')"),
    ],
)
def test_bad_fleet_files_are_one_line_bad_input(tmp_path, text, fragment):
    path = tmp_path / "fleet.csv"
    path.write_text(text)
    with pytest.raises(BadInput) as caught:
        read_fleet(path, paper_results())
    message = str(caught.value)
    assert caught.value.exit_code == 2 and "\n" not in message and fragment in message, message
    assert message.startswith(str(path))


def test_unknown_device_lists_the_devices_of_the_results():
    with pytest.raises(
        BadInput,
        match=r"line 2: unknown device 'Pi 4'; devices in the results: Jetson Xavier AGX, "
        r"Jetson Xavier NX, MacBook Pro 2019, NVIDIA A40, Raspberry Pi 4$",
    ):
        parse_fleet("device,count\nPi 4,2\n", sorted({r.device_name for r in paper_results()}))
    with pytest.raises(BadInput, match="none \\(give results files or --reference paper\\)"):
        parse_fleet("device,count\nPi 4,2\n", [])


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"over_commit": 0.5}, "over_commit must be 1 or more"),
        ({"deadline_s": 0}, "deadline must be positive"),
        ({"clients_per_round": 11}, "clients_per_round must be between 1 and the fleet's 10 clients"),
        ({"rounds": -3}, "rounds must be positive"),
        ({"rounds": 0}, "rounds must be positive"),
    ],
)
def test_bad_options_name_the_setting(options, fragment):
    with pytest.raises(SettingError, match="^" + fragment.replace("(", r"\(")):
        fl_estimate_fleet(paper_results(), [FleetGroup(NX, 10)], FlSetting(), **options)


def test_csv_rows_carry_the_line_and_the_fleet_figures():
    estimate = fl_estimate_fleet(
        paper_results(), read_fleet(DATA / "fleet_pi_nx.csv", paper_results()), FlSetting(), trials=3
    )
    records = fleet_records(estimate)
    assert [r.device for r in records] == [PI, NX] and [r.line for r in records] == [2, 3]
    assert all(r.fleet_days_mean == estimate.figures.days_mean for r in records)


# -- the command -------------------------------------------------------------------------------------------------
def _invoke(*args: str):
    from typer.testing import CliRunner

    from w2vprof.cli.main import app

    return CliRunner().invoke(
        app, ["fl-estimate", "--reference", "paper", "--fleet", str(DATA / "fleet_pi_nx.csv"), *args]
    )


def test_cli_table_csv_and_json():
    deadline = f"{_today(NX).round_hours * 3600:.1f}"
    table = _invoke("--clients-per-round", "20", "--over-commit", "1.5", "--deadline", deadline, "--seed", "3")
    assert table.exit_code == 0, table.output
    assert "Federated pretraining on a fleet" in table.output and "Raspberry Pi 4" in table.output
    assert "no communication cost" in table.output

    as_csv = _invoke("--format", "csv", "--rounds", "300", "--deadline", deadline, "--clients-per-round", "20")
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert [r["device"] for r in rows] == [PI, NX]
    assert float(rows[0]["fleet_days_mean"]) == pytest.approx(2 * _today(NX).total_days, rel=0.05)  # 300 rounds
    assert rows[0]["fleet_deadline_sec"] == deadline and rows[0]["fleet_rounds"] == "300"

    as_json = _invoke("--format", "json", "--seed", "5")
    assert as_json.exit_code == 0, as_json.output
    parsed = json.loads(as_json.output)
    assert parsed[0]["fleet_seed"] == 5 and parsed[0]["slowest_share"] == 1.0
    assert parsed[0]["fleet_days_mean"] == pytest.approx(_today(PI).total_days, rel=0.01)


def test_cli_bad_fleet_is_one_line_and_exit_2(tmp_path, capsys):
    from w2vprof.cli.main import run

    bad = tmp_path / "fleet.csv"
    bad.write_text("device,count\nCray-1,2\n")
    with pytest.raises(SystemExit) as exited:
        run(["fl-estimate", "--reference", "paper", "--fleet", str(bad)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.strip().splitlines()) == 1 and "unknown device 'Cray-1'" in err
    with pytest.raises(SystemExit) as exited:
        run(["fl-estimate", "--reference", "paper", "--fleet", str(DATA / "fleet_pi_nx.csv"), "--over-commit", "0.5"])
    assert exited.value.code == 2 and "--over-commit must be 1 or more" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        run(["fl-estimate", "--reference", "paper", "--deadline", "100"])
    assert exited.value.code == 2 and "--deadline and --over-commit need --fleet" in capsys.readouterr().err
