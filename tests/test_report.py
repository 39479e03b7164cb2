"""report: every table renderer and every plot runs on small files; golden tables; old schema; bad files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run_cli
from w2vprof.analysis.compare import compare
from w2vprof.analysis.data import paper_results
from w2vprof.records import read_results_csv
from w2vprof.report.build import build_report, load_inputs
from w2vprof.report.render import comparison_markdown, table2, table_csv, table_html, table_latex, table_markdown

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("W2VPROF_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from its golden file (W2VPROF_UPDATE_GOLDEN=1 to accept)"


def test_table2_of_the_paper_matches_golden():
    table = table2(paper_results(), 5.5)
    _golden("paper_table2.md", table_markdown(table))
    _golden("paper_table2.csv", table_csv(table))
    _golden("paper_table2.tex", table_latex(table))
    assert "<table>" in table_html(table)
    _golden("paper_compare.md", comparison_markdown(compare(paper_results(), baseline="NVIDIA A40")))


def test_report_writes_every_table_and_plot(tmp_path):
    summary = tmp_path / "summary.csv"
    assert run_cli("summary", "--model", "tiny", "--seconds", "1", "--format", "csv", "--out", str(summary)).returncode == 0
    out = tmp_path / "report"
    result = run_cli("report", str(DATA / "small.csv"), str(summary), "--out", str(out), "--format", "latex")
    assert result.returncode == 0, result.stderr
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "report.html", "table1.csv", "table2.csv", "table1.tex", "table2.tex",
            "fig2_activation_memory.png", "fig2_flops.png", "fig3_memory_vs_seconds.png", "fig3_flops_vs_seconds.png",
            "time_vs_seconds.png", "fig4_base_fp32_vs_mixed.png"} <= names
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(list(out.glob("*.png")))  # self-contained
    assert "Test Board" in (out / "table2.csv").read_text()
    assert "OOM" in (out / "table2.csv").read_text()
    assert "Training time" in result.stdout  # the Table 2 view printed to the terminal


def test_report_skips_plots_without_data(tmp_path):
    report = build_report(load_inputs([DATA / "old_schema.csv"]))
    assert "table2" in report.tables and not report.figures
    assert any("Fig. 2 plots skipped" in note for note in report.notes)


def test_older_schema_still_loads():
    (row,) = read_results_csv(DATA / "old_schema.csv")
    assert row.sec_per_batch_median == 3.5 and row.act_mem_bytes is None and row.workload == "synthetic"


def test_not_w2vprof_output_is_one_line_exit_2(tmp_path):
    result = run_cli("report", str(DATA / "not_w2vprof.csv"), "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "not_w2vprof.csv" in result.stderr
    assert not (tmp_path / "r").exists()
