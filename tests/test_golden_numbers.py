"""Golden numbers: restructuring must not move a single FLOP, byte or column.

The files under tests/golden/numbers/ were written by main before the structure work (issue 12), by
`w2vprof summary ... --format csv` and `w2vprof profile --model tiny --batch 2 --seconds 1 --repeats 2`.
Times, peak memory and environment fields differ run to run and are not compared; everything that is
arithmetic (FLOPs, parameter/gradient/optimizer/activation bytes) or seeded (loss, masked fraction) is.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden" / "numbers"


def _summary_csv(model: str, seconds: float, batch: int, per_layer: bool) -> str:
    from dataclasses import fields

    from w2vprof.measure.summary import summarize
    from w2vprof.records import ModuleSummaryRow, rows_to_csv_text

    rows = summarize(model, seconds, batch, per_layer=per_layer)
    return rows_to_csv_text(rows, [f.name for f in fields(ModuleSummaryRow)])


@pytest.mark.parametrize(
    "golden, model, seconds, batch, per_layer",
    [
        ("summary_base_5.5.csv", "base", 5.5, 1, False),
        ("summary_large_5.5.csv", "large", 5.5, 1, False),
        ("summary_base_layers_2s_b2.csv", "base", 2.0, 2, True),
        ("summary_tiny_layers_1s.csv", "tiny", 1.0, 1, True),
    ],
)
def test_summary_numbers_are_unchanged(golden, model, seconds, batch, per_layer):
    expected = (GOLDEN / golden).read_text()
    assert _summary_csv(model, seconds, batch, per_layer) == expected


@pytest.mark.integration
def test_tiny_profile_numbers_and_columns_are_unchanged(tiny_profile_result):
    from w2vprof.records import RESULT_COLUMNS, rows_to_csv_text

    golden = json.loads((GOLDEN / "profile_tiny_b2_1s.json").read_text())
    # New columns may be appended by later schema versions; the old ones keep their names and order.
    assert list(RESULT_COLUMNS[: len(golden["columns"])]) == golden["columns"]
    row = next(csv.DictReader(io.StringIO(rows_to_csv_text([tiny_profile_result.record], RESULT_COLUMNS))))
    for column, value in golden["values"].items():
        if column == "loss":
            assert float(row[column]) == pytest.approx(float(value), rel=1e-5), column
        else:
            assert row[column] == value, column


@pytest.mark.integration
def test_tiny_profile_layer_rows_are_unchanged(tiny_profile_result):
    expected = list(csv.DictReader(io.StringIO((GOLDEN / "profile_tiny_b2_1s_layers.csv").read_text())))
    assert [layer.layer for layer in tiny_profile_result.layers] == [row["layer"] for row in expected]
    for layer, row in zip(tiny_profile_result.layers, expected):
        for column, value in row.items():
            assert str(getattr(layer, column)) == value, (layer.layer, column)
