"""compare: the paper's ratios come out of the shipped data; formats; the wheel-independent reference."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli_in_process
from w2vprof.analysis.compare import compare
from w2vprof.analysis.data import paper_results
from w2vprof.report.compare_views import compare_view
from w2vprof.report.render import table_markdown

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden"


def _row(rows, **match):
    return next(r for r in rows if all(getattr(r, k) == v for k, v in match.items()))


def test_paper_ratios_come_out_of_the_table():
    comparison = compare(paper_results(), baseline="NVIDIA A40")

    def slowdown(device: str) -> float:
        return _row(comparison.rows, device=device, model="base", batch=1, precision="fp32").slowdown_vs_baseline

    assert slowdown("MacBook Pro 2019") == pytest.approx(31.3, abs=0.05)  # 3.76 / 0.12
    assert slowdown("Raspberry Pi 4") == pytest.approx(138.3, abs=0.05)  # 16.60 / 0.12
    for device, gain in (
        ("MacBook Pro 2019", 0.15),
        ("Raspberry Pi 4", 0.20),  # 1 - 12.83 / 4 / 3.76 = 0.147
        ("Jetson Xavier AGX", 0.29),
        ("Jetson Xavier NX", 0.33),
    ):  # 1 - 1.78 / 4 / 0.67 = 0.336
        row = _row(comparison.batch_gains, device=device, model="base", precision="fp32")
        assert (row.batch_small, row.batch_large) == (1, 4)
        assert row.per_sequence_gain == pytest.approx(gain, abs=0.01), device
    nx = _row(comparison.mixed_speedups, device="Jetson Xavier NX", model="base", batch=4)
    assert nx.mixed_speedup == pytest.approx(1.56, abs=0.005)  # 1.78 / 1.14
    assert {(r.device, r.model, r.batch, r.precision) for r in comparison.ooms} == {
        ("Raspberry Pi 4", "large", 1, "fp32"),
        ("Raspberry Pi 4", "large", 4, "fp32"),
        ("Jetson Xavier AGX", "large", 4, "fp32"),
        ("Jetson Xavier NX", "large", 1, "fp32"),
        ("Jetson Xavier NX", "large", 1, "mixed"),
        ("Jetson Xavier NX", "large", 4, "fp32"),
        ("Jetson Xavier NX", "large", 4, "mixed"),
    }


def test_markdown_view_matches_golden():
    text = "\n".join(table_markdown(t) for t in compare_view(compare(paper_results(), "NVIDIA A40")).tables)
    assert text == (GOLDEN / "paper_compare.md").read_text(encoding="utf-8")


def test_csv_columns_and_every_format():
    result = run_cli_in_process("compare", "--reference", "paper", "--baseline", "NVIDIA A40", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0])[:7] == [
        "device",
        "model",
        "batch",
        "precision",
        "sec_per_batch",
        "status",
        "slowdown_vs_baseline",
    ]
    assert {r["device"] for r in rows} == {
        "NVIDIA A40",
        "MacBook Pro 2019",
        "Raspberry Pi 4",
        "Jetson Xavier AGX",
        "Jetson Xavier NX",
    }
    pi = next(
        r
        for r in rows
        if r["device"] == "Raspberry Pi 4" and r["model"] == "large" and r["batch"] == "1" and r["precision"] == "fp32"
    )
    assert pi["status"] == "oom" and pi["sec_per_batch"] == "" and pi["slowdown_vs_baseline"] == ""
    as_json = json.loads(run_cli_in_process("compare", "--reference", "paper", "--format", "json").stdout)
    assert {"baseline", "rows", "batch_gains", "mixed_speedups", "oom"} <= set(as_json)
    table = run_cli_in_process("compare", str(DATA / "small.csv"), "--reference", "paper", "--baseline", "NVIDIA A40")
    assert table.returncode == 0 and "Test Board" in table.stdout and "138.3x" in table.stdout


def test_a_measured_device_joins_the_paper_at_the_same_length(tmp_path):
    out = tmp_path / "cmp.csv"
    result = run_cli_in_process(
        "compare",
        str(DATA / "small.csv"),
        "--reference",
        "paper",
        "--baseline",
        "NVIDIA A40",
        "--seconds",
        "5.5",
        "--format",
        "csv",
        "--out",
        str(out),
    )
    assert result.returncode == 0 and result.stdout == ""
    assert "Test Board" not in out.read_text()  # it was measured at 1-4 s only: no 5.5 s rows to set beside


def test_reference_data_loads_outside_the_source_tree(tmp_path):
    """As from an installed package: importlib.resources, not a path into the checkout."""
    code = (
        "from w2vprof.analysis.data import paper_results; from w2vprof.devices.profiles import load_profiles; "
        "print(len(paper_results()), len(load_profiles()))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "40" and int(out.stdout.split()[1]) >= 16


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--reference", "paper", "--baseline", "Cray-1"], "--baseline device 'Cray-1' is unknown"),
        (["--reference", "nope"], "--reference 'nope' is unknown; choose from paper"),
        ([str(DATA / "not_w2vprof.csv")], "not_w2vprof.csv: not a w2vprof"),
        ([], "--reference paper or results files are needed: there are no results to compare"),
        (["--reference", "paper", "--seconds", "3"], "--seconds 3: no results at that length"),
        (["--reference", "paper", "--seconds", "-1"], "--seconds must be a positive number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, fragment):
    result = run_cli_in_process("compare", *args)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr, (
        result.stderr
    )


def test_two_machines_with_one_device_name_stay_apart(tmp_path):
    from w2vprof.analysis.data import load_results
    from w2vprof.records import RESULT_COLUMNS, read_results_csv, replace, write_records_csv

    rows = read_results_csv(DATA / "small.csv")
    for host in ("pi-a", "pi-b"):
        write_records_csv(
            tmp_path / f"{host}.csv", [replace(r, hostname=host, device_fingerprint=host) for r in rows], RESULT_COLUMNS
        )
    names = {r.device_name for r in load_results([tmp_path / "pi-a.csv", tmp_path / "pi-b.csv"])}
    assert names == {"Test Board (pi-a)", "Test Board (pi-b)"}
    assert {r.device_name for r in load_results([DATA / "small.csv"])} == {"Test Board"}  # one machine: as is


@pytest.mark.parametrize(
    "command",
    [
        ["compare", "--reference", "paper"],
        ["fl-estimate", "--reference", "paper", "--bandwidth", "10"],
    ],
)
def test_a_table_written_to_a_file_has_no_colour_codes(tmp_path, monkeypatch, command):
    """--out from a colour terminal: the file holds the drawing, not the terminal's escape codes."""
    from typer.testing import CliRunner

    from w2vprof.cli.main import app

    monkeypatch.setenv("FORCE_COLOR", "1")  # what a terminal gives Rich
    out = tmp_path / "view.txt"
    result = CliRunner().invoke(app, [*command, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "\x1b[" not in text and "Raspberry Pi 4" in text
