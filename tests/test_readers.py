"""Every reader checks each row before use: a bad cell is one line naming the file, the line and the column."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import pytest

from w2vprof.errors import BadInput
from w2vprof.fl.records import (
    CLIENT_COLUMNS,
    ROUND_COLUMNS,
    ClientRoundRecord,
    RoundRecord,
    read_clients_csv,
    read_rounds_csv,
)
from w2vprof.records import (
    LAYER_COLUMNS,
    LAYER_RULES,
    RESULT_COLUMNS,
    RESULT_RULES,
    SCHEMA_VERSION,
    LayerRecord,
    ResultRecord,
    read_layers_csv,
    read_results_csv,
    readable_record,
    rows_to_csv_text,
    write_records_csv,
)

DATA = Path(__file__).parent / "data"
SMALL = (DATA / "small.csv").read_text()


def _edited(tmp_path: Path, column: str, value: str, text: str = SMALL) -> Path:
    """`text` with `column` of its first data row set to `value`, written to a file."""
    rows = list(csv.reader(io.StringIO(text)))
    rows[1][rows[0].index(column)] = value
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path = tmp_path / "edited.csv"
    path.write_text(buffer.getvalue())
    return path


@pytest.mark.parametrize(
    "column, value, why",
    [
        ("batch", "0", "must be > 0"),
        ("batch", "-4", "must be > 0"),
        ("batch", "2.5", "not a whole number"),
        ("batch", "", "must be a number > 0"),
        ("batch", "four", "not a number"),
        ("seconds", "0", "must be > 0"),
        ("seconds", "nan", "not a finite number"),
        ("sec_per_batch_median", "-0.5", "must be > 0"),
        ("sec_per_batch_mean", "0", "must be > 0"),
        ("sec_per_batch_std", "-1", "must be >= 0"),
        ("sec_per_batch_median", "inf", "not a finite number"),
        ("train_flops", "-1", "must be >= 0"),
        ("fwd_flops", "1e400", "not a finite number"),
        ("act_mem_bytes", "nan", "not a finite number"),
        ("peak_mem_bytes", "-1", "must be >= 0"),
        ("energy_j_per_batch", "-inf", "not a finite number"),
        ("status", "fine", "not one of ok, oom, timeout, unsupported, error"),
        ("precision", "fp16", "not one of fp32, mixed"),
        ("throttled", "maybe", "not true or false"),
    ],
)
def test_a_results_cell_that_breaks_a_rule_is_named(tmp_path, column, value, why):
    path = _edited(tmp_path, column, value)
    with pytest.raises(BadInput) as caught:
        read_results_csv(path)
    assert str(caught.value) == f"{path}: line 2: column {column} has {value!r}, {why}"


@pytest.mark.parametrize(
    "column, value, expected",
    [
        ("model", "wav2vec2-xl-from-the-future", "wav2vec2-xl-from-the-future"),  # unknown models are shown as written
        ("batch", "4.0", 4),
        ("batch", "1e1", 10),
        ("sec_per_batch_median", "", None),
        ("max_temp_c", "-12.5", -12.5),  # a Pi outdoors in winter
        ("loss", "nan", "nan"),  # a diverged loss is a measurement
        ("throttled", "TRUE", True),
        ("repeats", "", 0),  # an older file left it empty
    ],
)
def test_values_within_the_rules_are_read(tmp_path, column, value, expected):
    (row, *_) = read_results_csv(_edited(tmp_path, column, value))
    got = getattr(row, column)
    assert math.isnan(got) if expected == "nan" else got == expected


def test_an_error_row_may_leave_every_measurement_empty(tmp_path):
    text = rows_to_csv_text([read_results_csv(DATA / "small.csv")[0]], RESULT_COLUMNS)
    path = tmp_path / "e.csv"
    path.write_text(text)
    for column in ("sec_per_batch_median", "sec_per_batch_mean", "sec_per_sequence", "train_flops", "peak_mem_bytes"):
        path = _edited(tmp_path, column, "", path.read_text())
    path = _edited(tmp_path, "status", "error", path.read_text())
    (row,) = read_results_csv(path)
    assert row.status == "error" and row.sec_per_batch_median is None


def test_header_only_is_no_rows_unless_the_caller_takes_an_empty_file(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text(",".join(RESULT_COLUMNS) + "\n")
    with pytest.raises(BadInput, match=r"h\.csv: no rows$"):
        read_results_csv(path)
    assert read_results_csv(path, require_rows=False) == []


@pytest.mark.parametrize("cut", [5, 40, len(",".join(RESULT_COLUMNS)) - 3])
def test_a_file_cut_inside_its_header_is_not_a_results_file(tmp_path, cut):
    path = tmp_path / "cut.csv"
    path.write_text(",".join(RESULT_COLUMNS)[:cut])
    with pytest.raises(BadInput, match="not a w2vprof results file"):
        read_results_csv(path, require_rows=False)


def test_a_torn_row_is_refused(tmp_path):
    path = tmp_path / "torn.csv"
    path.write_text(SMALL[: SMALL.index("\n", SMALL.index("\n") + 1) + 40])
    with pytest.raises(BadInput, match=r"line 3 has fewer cells than the header"):
        read_results_csv(path)


def test_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "windows.csv"
    path.write_bytes(b"\xef\xbb\xbf" + SMALL.replace("\n", "\r\n").encode())
    assert read_results_csv(path) == read_results_csv(DATA / "small.csv")


def test_line_numbers_count_blank_lines(tmp_path):
    header, first, *_ = SMALL.splitlines(keepends=True)
    bad = _edited(tmp_path, "batch", "0").read_text().splitlines(keepends=True)[1]
    path = tmp_path / "blank.csv"
    path.write_text(header + "\n" + first + "\n" + bad)  # the bad row is on line 5
    with pytest.raises(BadInput, match="line 5: column batch"):
        read_results_csv(path)


def test_newer_schema_is_named_before_its_cells_are_judged(tmp_path):
    path = _edited(tmp_path, "schema_version", "9", _edited(tmp_path, "status", "paused").read_text())
    with pytest.raises(BadInput, match=rf"newer w2vprof \(schema 9 > {SCHEMA_VERSION}\)"):
        read_results_csv(path)


def _one_row_file(tmp_path: Path, record, columns, column: str, value: str) -> Path:
    return _edited(tmp_path, column, value, rows_to_csv_text([record], columns))


@pytest.mark.parametrize(
    "column, value, why",
    [
        ("params", "-1", "must be >= 0"),
        ("fwd_flops", "x", "not a number"),
        ("cum_act_mem_bytes", "1.5", "not a whole number"),
    ],
)
def test_layer_rows_are_checked(tmp_path, column, value, why):
    path = _one_row_file(tmp_path, LayerRecord("cnn.0", "cnn", 1, 2, 3, 4, 5), LAYER_COLUMNS, column, value)
    with pytest.raises(BadInput, match=f"line 2: column {column} has '{value}', {why}"):
        read_layers_csv(path)


@pytest.mark.parametrize(
    "column, value, why",
    [
        ("round", "-1", "must be >= 0"),
        ("round_sec", "-0.1", "must be >= 0"),
        ("payload_bytes", "inf", "not a finite number"),
        ("participants", "two", "not a number"),
    ],
)
def test_round_rows_are_checked(tmp_path, column, value, why):
    path = _one_row_file(
        tmp_path, RoundRecord(round=1, aggregation="fedavg", validation_loss=3.0), ROUND_COLUMNS, column, value
    )
    with pytest.raises(BadInput, match=f"column {column} has '{value}', {why}"):
        read_rounds_csv(path)


def test_a_diverged_round_loss_reads_as_nan(tmp_path):
    path = _one_row_file(tmp_path, RoundRecord(round=1, aggregation="fedavg"), ROUND_COLUMNS, "validation_loss", "nan")
    (row,) = read_rounds_csv(path)
    assert math.isnan(row.validation_loss)


@pytest.mark.parametrize(
    "column, value, why",
    [
        ("status", "maybe", "not one of ok, oom, error"),
        ("client_sec", "-3", "must be >= 0"),
        ("peak_rss_bytes", "nan", "not a finite number"),
        ("energy_j", "nan", "not a finite number"),
    ],
)
def test_client_rows_are_checked(tmp_path, column, value, why):
    record = ClientRoundRecord(round=1, client="a", client_sec=2.0)
    path = _one_row_file(tmp_path, record, CLIENT_COLUMNS, column, value)
    with pytest.raises(BadInput, match=f"column {column} has '{value}', {why}"):
        read_clients_csv(path)


def test_fl_files_without_rows_read_as_empty(tmp_path):
    (tmp_path / "rounds.csv").write_text(",".join(ROUND_COLUMNS) + "\n")
    assert read_rounds_csv(tmp_path / "rounds.csv") == []


# --- what a user sees: one line and exit status 2 from the commands that read results files -------------------


def _cli(capsys, *args: str) -> tuple[int, str]:
    from w2vprof.cli.main import run

    with pytest.raises(SystemExit) as caught:
        run(list(args))
    return caught.value.code, capsys.readouterr().err


@pytest.mark.parametrize("command", [["compare"], ["fl-estimate"], ["feasibility"], ["report", "--out", "REPORT"]])
@pytest.mark.parametrize("problem", ["batch0", "negative", "header_only", "header_cut"])
def test_commands_refuse_bad_results_files_in_one_line(tmp_path, capsys, command, problem):
    if problem == "batch0":
        path = _edited(tmp_path, "batch", "0")
    elif problem == "negative":
        path = _edited(tmp_path, "sec_per_batch_median", "-0.5")
    else:
        path = tmp_path / "h.csv"
        header = ",".join(RESULT_COLUMNS)
        path.write_text(header + "\n" if problem == "header_only" else header[:30])
    args = [a.replace("REPORT", str(tmp_path / "report")) for a in command]
    code, err = _cli(capsys, *args, str(path))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("w2vprof: error: ") and str(path) in err
    assert "Traceback" not in err
    expected = {
        "batch0": "column batch has '0'",
        "negative": "column sec_per_batch_median has '-0.5'",
        "header_only": "no rows",
        "header_cut": "not a w2vprof results file",
    }[problem]
    assert expected in err


# -- what w2vprof writes, w2vprof reads back ---------------------------------------------------------------------
def test_a_value_that_breaks_a_rule_is_written_empty_and_said_not_left_to_refuse_the_file(tmp_path):
    """One cell a reader refuses makes it refuse the whole file: a sweep's finished rows would be unreadable, and
    the sweep unresumable. A computed value outside the rules (a bug's negative time, a NaN) is written empty
    instead, and the row's notes say which and why."""
    from w2vprof.sweep.writer import ResultsWriter

    good = ResultRecord(model="base", batch=4, seconds=5.5, precision="fp32", status="ok", sec_per_batch_median=2.5)
    bad = replace(good, batch=2, sec_per_batch_median=-1.0, act_mem_bytes=-5, loss=float("nan"), notes="kept")
    path = tmp_path / "r.csv"
    writer, _ = ResultsWriter.open(path, resume=False)
    with writer:
        writer.append(good)
        writer.append(bad)
    first, second = read_results_csv(path)
    assert first == good  # a good row is written as it is
    assert (second.sec_per_batch_median, second.act_mem_bytes) == (None, None)
    assert math.isnan(second.loss)  # a diverged loss is a measurement: the rules take NaN there
    assert second.notes == (
        "kept; sec_per_batch_median was -1.0 (must be > 0): left empty; act_mem_bytes was -5 (must be >= 0): left empty"
    )
    assert readable_record(good, RESULT_RULES) is good


def test_a_negative_layer_time_is_written_empty(tmp_path):
    rows = [
        LayerRecord(layer="cnn.0", kind="cnn", act_mem_bytes=8, sec=1.5),
        LayerRecord(layer="other", kind="other", sec=-2.0),
    ]
    path = tmp_path / "layers.csv"
    write_records_csv(path, rows, LAYER_COLUMNS, LAYER_RULES)
    assert [(row.layer, row.sec) for row in read_layers_csv(path)] == [("cnn.0", 1.5), ("other", None)]
    write_records_csv(path, rows, LAYER_COLUMNS)  # without the rules: the file its reader refuses
    with pytest.raises(BadInput, match="column sec has '-2.0', must be >= 0"):
        read_layers_csv(path)


#: A type alias whose name holds "int": a reader searching the annotation's text took this float column for a
#: whole number; the codec reads the type the annotation names (typing.get_type_hints).
Points = float


@dataclass
class _ScoreRow:
    name: str = ""
    points: Points = 0.0
    bonus: Optional[Points] = None
    count: Optional[int] = None


@dataclass
class _ListRow:
    values: list = None  # type: ignore[assignment]


def test_a_column_is_read_as_the_type_its_annotation_names():
    from w2vprof.record_codec import column_types
    from w2vprof.records import RowRules, read_records

    types = column_types(_ScoreRow)
    assert [(name, t.kind, t.optional) for name, t in types.items()] == [
        ("name", str, False),
        ("points", float, False),
        ("bonus", float, True),
        ("count", int, True),
    ]
    rules = RowRules(what="score", required=("name",))
    (row,) = read_records(Path("scores.csv"), _ScoreRow, rules, text="name,points,bonus,count\na,2.5,,3\n")
    assert row == _ScoreRow("a", 2.5, None, 3)
    with pytest.raises(TypeError, match=r"_ListRow\.values: a column is bool, int, float or str"):
        column_types(_ListRow)
