"""Federated pieces that need no Flower: aggregation arithmetic, per-round peak memory, settings, CSVs, data."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from conftest import run_cli
from w2vprof.errors import BadInput, SettingError
from w2vprof.fl.aggregation import aggregation_label, aggregation_weights, average_arrays
from w2vprof.fl.memory import MemorySources, read_peak, read_status_kib, reset_peak
from w2vprof.fl.records import CLIENT_COLUMNS, ClientRoundRecord, DurableCsv, read_clients_csv
from w2vprof.fl.settings import FlSettings

STATUS = "Name:\tpython\nVmPeak:\t 2000000 kB\nVmHWM:\t  523456 kB\nVmRSS:\t  400000 kB\nThreads:\t4\n"


# -- aggregation ------------------------------------------------------------------------------------------------
def test_fedavg_weights_are_float_shares_of_examples():
    assert aggregation_weights([1, 3], [5.0, 5.0], "fedavg") == [0.25, 0.75]
    # 7 / 21 would be 0 in integer division: the shares must stay 1/3 each
    assert aggregation_weights([7, 7, 7], [1.0, 2.0, 3.0], "fedavg") == pytest.approx([1 / 3] * 3)


def test_exp_loss_weights():
    # exp(-1) / (exp(-1) + exp(-2)) = 1 / (1 + e^-1) = 0.7311
    weights = aggregation_weights([4, 400], [1.0, 2.0], "loss", "exp", temperature=1.0)
    assert weights == pytest.approx([1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))])
    # a large temperature flattens the weights towards equal shares; huge losses do not overflow
    assert aggregation_weights([1, 1], [1000.0, 1001.0], "loss", "exp", temperature=1e6) == pytest.approx([0.5, 0.5])


def test_inverse_loss_weights_and_unusable_clients():
    # 1/2 : 1/4 = 2/3 : 1/3
    assert aggregation_weights([1, 1], [2.0, 4.0], "loss", "inverse") == pytest.approx([2 / 3, 1 / 3])
    assert aggregation_weights([1, 1, 1], [2.0, float("nan"), 2.0], "loss", "inverse") == pytest.approx([0.5, 0, 0.5])
    with pytest.raises(ValueError):
        aggregation_weights([1, 1], [float("nan"), float("inf")], "loss", "exp")


def test_average_keeps_dtypes_and_rounds_counters():
    first = {"w": np.array([1.0, 2.0], dtype=np.float32), "num_updates": np.array(10, dtype=np.int64)}
    second = {"w": np.array([3.0, 6.0], dtype=np.float32), "num_updates": np.array(13, dtype=np.int64)}
    averaged = average_arrays([first, second], [0.5, 0.5])
    assert averaged["w"].dtype == np.float32 and averaged["w"].tolist() == [2.0, 4.0]
    # (10 + 13) / 2 = 11.5 -> 12 (rounded, not truncated to 11); a 0-d array stays an array
    assert isinstance(averaged["num_updates"], np.ndarray) and int(averaged["num_updates"]) == 12
    assert averaged["num_updates"].dtype == np.int64


def test_aggregation_labels():
    assert aggregation_label("fedavg", "exp", 1) == "fedavg"
    assert aggregation_label("loss", "exp", 0.5) == "loss:exp(T=0.5)"
    assert aggregation_label("loss", "inverse", 1) == "loss:inverse"


# -- peak memory: fake /proc/<pid> trees ---------------------------------------------------------------------------
def test_status_parsing():
    assert read_status_kib(STATUS, "VmHWM") == 523456
    assert read_status_kib(STATUS, "VmSwap") is None
    assert read_status_kib("VmHWM:\tgarbage kB", "VmHWM") is None


def test_peak_after_reset(tmp_path):
    (tmp_path / "status").write_text(STATUS)
    (tmp_path / "clear_refs").write_text("")
    reset, start = reset_peak(tmp_path)
    assert reset and start == 400000 * 1024
    assert (tmp_path / "clear_refs").read_text() == "5"  # "5" resets VmHWM (proc(5))
    peak = read_peak(reset, start, tmp_path)
    assert (peak.peak_rss_bytes, peak.start_rss_bytes, peak.source) == (523456 * 1024, start, MemorySources.RESET)


def test_peak_when_reset_is_refused(tmp_path):
    (tmp_path / "status").write_text(STATUS)
    (tmp_path / "clear_refs").mkdir()  # writing fails, as on a locked-down /proc
    reset, _ = reset_peak(tmp_path)
    assert not reset
    assert read_peak(reset, None, tmp_path).source == MemorySources.PROCESS


def test_real_proc_self_resets_on_linux():
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")
    reset, start = reset_peak()
    block = b"\x01" * (64 << 20)  # 64 MiB written (so resident), freed before the peak is read
    del block
    peak = read_peak(reset, start)
    # A high-water mark: the freed block still counts, above the resident set the reset started from.
    assert start and peak.peak_rss_bytes and peak.peak_rss_bytes >= start + (48 << 20)
    assert peak.source == (MemorySources.RESET if reset else MemorySources.PROCESS)
    if reset:  # a second reset forgets the block: the mark starts again from the resident set now
        again, now = reset_peak()
        assert again and now and (read_peak(again, now).peak_rss_bytes or 0) < now + (48 << 20)


# -- settings and files ---------------------------------------------------------------------------------------------
def test_settings_round_trip_through_a_flower_config():
    settings = FlSettings(clients=100, clients_per_round=20, aggregation="loss", temperature=0.5, lr=1e-4)
    config = settings.to_config()
    assert config["clients-per-round"] == 20 and all(isinstance(v, (str, int, float, bool)) for v in config.values())
    assert FlSettings.from_config({**config, "server-round": 3}) == settings
    assert settings.sampled_per_round == 20 and FlSettings(clients=7).sampled_per_round == 7


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"aggregation": "median"}, "aggregation 'median' is unknown; choose from fedavg, loss"),
        ({"loss_weighting": "log"}, "loss_weighting 'log' is unknown"),
        ({"clients_per_round": 11}, "clients_per_round must be between 1 and clients (10), got 11"),
        ({"rounds": 0}, "rounds must be a positive whole number"),
        ({"temperature": 0.0}, "temperature must be a positive number"),
        ({"threads": -1}, "threads cannot be negative, got -1"),
        ({"device": "tpu"}, "device 'tpu' is unknown"),
    ],
)
def test_bad_settings_name_the_setting_not_a_flag(changes, fragment):
    with pytest.raises(SettingError) as raised:
        FlSettings(**changes)
    assert str(raised.value).startswith(fragment) and "--" not in str(raised.value)
    assert raised.value.setting == next(iter(changes))


def test_an_unknown_model_is_bad_input():
    with pytest.raises(BadInput, match="unknown model"):
        FlSettings(model="huge")


@pytest.mark.parametrize(
    "run_config, line",
    [
        ({"local-epochs": 0}, "run-config key 'local-epochs' must be a positive whole number, got 0"),
        (
            {"clients": 4, "clients-per-round": 5},
            "run-config key 'clients-per-round' must be between 1 and run-config key 'clients' (4), got 5",
        ),
        ({"aggregation": "median"}, "run-config key 'aggregation' 'median' is unknown; choose from fedavg, loss"),
        ({"rounds": "many"}, "run-config key 'rounds' must be int, got 'many'"),
    ],
)
def test_a_flower_run_config_error_names_the_run_config_key(run_config, line):
    # What a ServerApp or ClientApp started by `flwr run` reports: the keys of its run config, never CLI flags.
    with pytest.raises(BadInput) as raised:
        FlSettings.from_config(run_config)
    assert str(raised.value) == line


def test_durable_csv_appends_rounds_and_reads_back(tmp_path):
    path = tmp_path / "clients.csv"
    writer = DurableCsv(path, CLIENT_COLUMNS)
    writer.extend([ClientRoundRecord(round=1, client="a", client_sec=1.5, peak_rss_bytes=10, partition_id=0)])
    DurableCsv(path, CLIENT_COLUMNS).append(ClientRoundRecord(round=2, client="a", status="error", error="boom"))
    rows = read_clients_csv(path)
    assert [(r.round, r.client_sec, r.peak_rss_bytes, r.partition_id, r.status) for r in rows] == [
        (1, 1.5, 10, 0, "ok"),
        (2, None, None, None, "error"),
    ]
    assert path.read_text().count("round,client") == 1  # one header however often it is opened


def test_epoch_batches_crop_pad_and_cover_every_utterance():
    import torch

    from w2vprof.fl.data import epoch_batches

    utterances = [torch.ones(n) for n in (100, 250, 50, 400, 120)]
    batches = epoch_batches(utterances, batch_size=2, max_samples=200, seed=3)
    assert [b.size for b in batches] == [2, 2, 1]
    assert sorted(int(length) for b in batches for length in b.lengths) == [50, 100, 120, 200, 200]
    assert all(b.waveforms.shape[1] == int(b.lengths.max()) for b in batches)


def test_partition_folder_layout(tmp_path):
    from w2vprof.fl.data import client_entries, held_out_entry

    for name in ("client_001.tsv", "client_000.tsv", "heldout.tsv", "summary.csv"):
        (tmp_path / name).write_text("client_id\tpath\n")
    assert [p.name for p in client_entries(tmp_path)] == ["client_000.tsv", "client_001.tsv"]
    assert held_out_entry(tmp_path).name == "heldout.tsv"
    with pytest.raises(BadInput, match="no such folder"):
        client_entries(tmp_path / "missing")


def test_cli_help_does_not_import_flower_or_torch():
    code = (
        "import sys; from w2vprof.cli.main import run\n"
        "try:\n    run(['fl', 'simulate', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('RESULT', 'flwr' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "RESULT False False" in out.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--aggregation", "bogus"], "--aggregation 'bogus' is unknown"),
        (["--clients", "4", "--clients-per-round", "5"], "--clients-per-round must be between 1 and --clients (4)"),
        (["--parallel", "0"], "--parallel must be at least 1"),
    ],
)
def test_simulate_bad_input_is_one_line_exit_2(tmp_path, args, fragment):
    result = run_cli("fl", "simulate", "--out", str(tmp_path / "run"), *args)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1
