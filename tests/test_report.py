"""report: every table renderer and every plot runs on small files; golden tables; old schema; bad files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from conftest import run_cli_in_process
from w2vprof.analysis.data import paper_results
from w2vprof.records import RESULT_COLUMNS, read_layers_csv, read_results_csv, replace, write_records_csv
from w2vprof.report import plots
from w2vprof.report.build import build_report, load_inputs
from w2vprof.report.render import Table, table_csv, table_html, table_latex, table_markdown, table_terminal
from w2vprof.report.result_tables import environment_table, results_table, table2
from w2vprof.report.summary_views import table1

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden"
PNG = b"\x89PNG\r\n\x1a\n"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("W2VPROF_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file (W2VPROF_UPDATE_GOLDEN=1)"


# -- tables -------------------------------------------------------------------------------------------------
def test_table2_of_the_paper_matches_golden():
    table = table2(paper_results(), 5.5)
    _golden("paper_table2.md", table_markdown(table))
    _golden("paper_table2.csv", table_csv(table))
    _golden("paper_table2.tex", table_latex(table))
    assert table.rows[4] == ["Raspberry Pi 4", "1", "16.60", "-", "OOM", "-"]  # the paper's own notation
    assert "<td>OOM</td>" in table_html(table)
    assert "Raspberry Pi 4" in table_terminal(table, width=120)


def test_table1_results_and_environment_match_golden():
    from w2vprof.records import read_summary_csv

    _golden("table1_summary.md", table_markdown(table1(read_summary_csv(DATA / "summary_tiny.csv"))))
    rows = read_results_csv(DATA / "small.csv")
    _golden("small_results.md", table_markdown(results_table(rows)))
    _golden("small_environment.md", table_markdown(environment_table(rows)))


def test_latex_escapes_what_latex_would_misread():
    text = table_latex(Table("50% of a_b & c", ["x#", "y"], [["{1}", "$2"]], caption="~^"))
    assert r"50\% of a\_b \& c" in text and r"x\#" in text and r"\{1\} & \$2" in text
    assert r"\textasciitilde{}\textasciicircum{}" in text


def test_alignment_emphasis_and_a_headless_table_reach_every_renderer():
    table = Table(
        "T",
        ["name", "note"],
        [["a", "left text"], ["total", "sum"]],
        align="ll",
        emphasis=frozenset({1}),
        show_header=False,
    )
    assert "|---|---|" in table_markdown(table) and "| **total** | **sum** |" in table_markdown(table)
    assert r"\begin{tabular}{ll}" in table_latex(table)
    assert "<tr style='font-weight:bold'><td>total</td>" in table_html(table)
    drawn = table_terminal(table, plain=True)
    assert "left text" in drawn and "note" not in drawn  # no header line on the terminal
    assert "\x1b[" not in drawn  # plain: no colour codes, whatever the terminal
    assert table_csv(table).startswith("name,note\n")  # the CSV keeps its column names
    default = Table("T", ["a", "b", "c"], [])
    assert default.alignment() == "lrr" and "|---|---:|---:|" in table_markdown(default)


# -- plots --------------------------------------------------------------------------------------------------
def test_every_plot_draws_and_degrades_without_data():
    layers = read_layers_csv(DATA / "small.layers" / "base_b4_s1.csv")
    assert plots.layer_memory_png(layers, "t")[:8] == PNG
    assert plots.layer_flops_png(layers, "t")[:8] == PNG
    assert plots.versus_seconds_png({"a": [(1, 1.0), (2, 2.0)], "single": [(1, 3.0)]}, "GB", "t", "GB")[:8] == PNG
    assert plots.fp32_vs_mixed_png({"fp32": {1: 2e9, 2: 3e9}, "mixed": {1: 1.9e9}}, "t")[:8] == PNG
    assert plots.layer_memory_png([], "t") is None and plots.layer_flops_png([], "t") is None
    assert plots.versus_seconds_png({}, "GB", "t") is None
    assert plots.fp32_vs_mixed_png({"fp32": {1: 2e9}}, "t") is None  # one precision: nothing to compare


# -- the command --------------------------------------------------------------------------------------------
def test_report_writes_every_table_and_plot(tmp_path):
    out = tmp_path / "report"
    result = run_cli_in_process(
        "report", str(DATA / "small.csv"), str(DATA / "summary_tiny.csv"), "--out", str(out), "--format", "latex"
    )
    assert result.returncode == 0, result.stderr
    names = {p.name for p in out.iterdir()}
    tables = {"table1", "table2", "results", "environment"}
    figures = {
        "fig2_activation_memory.png",
        "fig2_flops.png",
        "fig3_memory_vs_seconds.png",
        "fig3_flops_vs_seconds.png",
        "time_vs_seconds.png",
        "fig4_base_fp32_vs_mixed.png",
    }
    assert names == {"report.md", "report.html"} | {f"{t}.csv" for t in tables} | {f"{t}.tex" for t in tables} | figures
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == PNG
    html = (out / "report.html").read_text()
    # self-contained: every image is a data URI, nothing is fetched
    assert html.count("data:image/png;base64,") == len(figures)
    assert not re.search(r"src='(?!data:)", html) and "<link" not in html
    md = (out / "report.md").read_text()
    assert all(f"]({name})" in md for name in figures) and "(table2.csv)" in md
    assert "Test Board,8,OOM,-" in (out / "table2.csv").read_text()  # 4 s: the length measured most often
    assert ",oom," in (out / "results.csv").read_text()
    assert "Training time" in result.stdout and "Test Board" in result.stdout  # the Table 2 view on the terminal


def test_report_with_the_paper_puts_your_device_in_table2(tmp_path):
    rows = [replace(r, seconds=5.5) for r in read_results_csv(DATA / "small.csv") if r.seconds == 1.0]
    path = tmp_path / "mine.csv"
    write_records_csv(path, rows, RESULT_COLUMNS)
    result = run_cli_in_process("report", str(path), "--reference", "paper", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "r" / "table2.csv").read_text().splitlines()
    assert table[0] == "device,batch,base FP32,base Mixed,large FP32,large Mixed"
    assert "NVIDIA A40,1,0.12,0.11,0.23,0.21" in table and "Test Board,4,0.50,0.50,-,-" in table


def test_report_skips_plots_it_has_no_data_for():
    report = build_report(load_inputs([DATA / "old_schema.csv"]))
    assert "table2" in report.tables and not report.figures
    assert any("Fig. 2 plots skipped" in note for note in report.notes)
    assert any("Figs. 3-4" in note for note in report.notes)


def test_report_notes_a_missing_layers_file_and_one_precision(tmp_path):
    rows = [r for r in read_results_csv(DATA / "small.csv") if r.precision == "fp32"]
    path = tmp_path / "fp32.csv"  # the layers file is relative to the results file: not beside this copy
    write_records_csv(path, rows, RESULT_COLUMNS)
    report = build_report(load_inputs([path]))
    assert "fig2_flops.png" not in report.figures and "fig3_memory_vs_seconds.png" in report.figures
    assert any("small.layers/base_b4_s1.csv is missing" in note for note in report.notes)
    assert any("Fig. 4 skipped" in note for note in report.notes)


def test_older_schema_still_loads():
    (row,) = read_results_csv(DATA / "old_schema.csv")
    assert row.sec_per_batch_median == 3.5 and row.act_mem_bytes is None and row.workload == "synthetic"


@pytest.mark.parametrize(
    "args, fragment",
    [
        ([str(DATA / "not_w2vprof.csv")], "not_w2vprof.csv: not a w2vprof"),
        ([str(DATA / "no_such.csv")], "no_such.csv: no such file"),
        ([str(DATA / "small.csv"), "--seconds", "3"], "--seconds 3: no results at that length"),
        ([str(DATA / "small.csv"), "--format", "pdf"], "unknown --format 'pdf'"),
        ([], "--reference paper or at least one results CSV (from w2vprof sweep or profile) must be given"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, fragment):
    result = run_cli_in_process("report", *args, "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr, (
        result.stderr
    )
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_report_folder_problems_are_one_line_before_any_input_is_read(tmp_path):
    (tmp_path / "a_file").write_text("x")
    for folder, fragment in (
        (tmp_path / "a_file", "is a file; give a folder"),
        (tmp_path / "missing" / "r", "does not exist"),
    ):
        # NB: the input does not exist either: the folder is checked first, so that is not what is reported
        result = run_cli_in_process("report", str(DATA / "no_such.csv"), "--out", str(folder))
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr, (
            result.stderr
        )


def test_write_report_replaces_files_and_leaves_no_temporary_file(tmp_path):
    from w2vprof.report.build import Report, write_report

    folder = tmp_path / "r"
    write_report(Report(tables={"t": Table("T", ["a"], [["1"]])}), folder)
    write_report(Report(tables={"t": Table("T", ["a"], [["2"]])}), folder, latex=True)
    assert (folder / "t.csv").read_text() == "a\n2\n" and (folder / "t.tex").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["report.html", "report.md", "t.csv", "t.tex"]


def test_reference_data_is_packaged_with_the_code():
    """pyproject lists packages by hand (to map devices/ into the package): every package must be in the list."""
    import tomllib

    root = Path(__file__).parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    src = root / "src"
    on_disk = {".".join(p.parent.relative_to(src).parts) for p in (src / "w2vprof").rglob("__init__.py")}
    assert on_disk <= set(config["packages"]), f"add to [tool.setuptools] packages: {on_disk - set(config['packages'])}"
    assert config["package-dir"]["w2vprof.reference_data"] == "devices"
    shipped = {p.name for p in (root / "devices").iterdir()}
    assert {"paper_table2.csv", "profiles.csv"} <= shipped
    assert {"*.csv", "*.md"} <= set(config["package-data"]["w2vprof.reference_data"])
    header = (root / "devices" / "paper_table2.csv").read_text().splitlines()[0]
    assert tuple(header.split(",")) == RESULT_COLUMNS  # written with the records helpers


def test_report_plots_federated_runs(tmp_path):
    """Fig. 5 top: validation loss per round, one curve per aggregation; and each run's per-client cost."""
    from dataclasses import fields

    from w2vprof.fl.records import ClientRoundRecord, RoundRecord
    from w2vprof.records import rows_to_csv_text

    runs = []
    for aggregation in ("fedavg", "loss:exp(T=1)"):
        folder = tmp_path / aggregation.replace(":", "-").replace("(", "").replace(")", "")
        folder.mkdir()
        rounds = [
            RoundRecord(round=r, aggregation=aggregation, participants=2, validation_loss=5.0 - 0.1 * r)
            for r in range(4)
        ]
        clients = [
            ClientRoundRecord(round=r, client=f"c{c}", client_sec=1.0 + c, peak_rss_bytes=10**9)
            for r in range(1, 4)
            for c in range(2)
        ]
        (folder / "rounds.csv").write_text(rows_to_csv_text(rounds, [f.name for f in fields(RoundRecord)]))
        (folder / "clients.csv").write_text(rows_to_csv_text(clients, [f.name for f in fields(ClientRoundRecord)]))
        runs.append(str(folder))
    _as_fleet_run(Path(runs[0]))
    out = tmp_path / "report"
    result = run_cli_in_process("report", *runs, "--out", str(out))
    assert result.returncode == 0, result.stderr
    names = {p.name for p in out.iterdir()}
    assert "fl_validation_loss.png" in names
    assert sum(name.startswith("fl_client_cost_") for name in names) == 2
    # the fleet run (only it): its timeline on the fleet and its days to train per fleet mix
    assert [n for n in sorted(names) if n.startswith("fl_fleet_")] == [
        "fl_fleet_days_fedavg.csv",
        "fl_fleet_timeline_fedavg.png",
    ]
    days = (out / "fl_fleet_days_fedavg.csv").read_text().splitlines()
    assert days[1].startswith("whole fleet,2,2,4.0,") and days[2].startswith("Pi only,1,1,4.0,")


def _as_fleet_run(folder: Path) -> None:
    """Give a run folder's clients fleet devices and verdicts, and the fleet.json `fl simulate --fleet` writes."""
    from dataclasses import fields, replace

    from w2vprof.fl.records import (
        ClientRoundRecord,
        FleetLineRecord,
        FleetMixDays,
        FleetRun,
        read_clients_csv,
        write_fleet_json,
    )
    from w2vprof.records import rows_to_csv_text

    clients = [
        replace(c, fleet_device="Pi", virtual_sec=4.0)
        if c.client == "c0"
        else replace(c, fleet_device="Phone", dropped="memory")
        for c in read_clients_csv(folder / "clients.csv")
    ]
    (folder / "clients.csv").write_text(rows_to_csv_text(clients, [f.name for f in fields(ClientRoundRecord)]))
    lines = (FleetLineRecord(2, "Pi", 1, 1.0, "", 2.0, None), FleetLineRecord(3, "Phone", 1, 1.0, "oom", None, None))
    mixes = (
        FleetMixDays("fleet", 2, 2, 4.0, 1e-4, 1e-4, 1e-4, 1.0),
        FleetMixDays("Pi", 1, 1, 4.0, 1e-4, 1e-4, 1e-4, 1.0),
        FleetMixDays("Phone", 1, 1, None, None, None, None, None, "no client can train"),
    )
    write_fleet_json(folder, FleetRun("fleet.csv", 2.0, 5.0, None, 3, lines, (0, 1), mixes))
