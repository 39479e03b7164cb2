"""Writing one profile's files: results.csv (one row), layers.csv, run.json; each written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from w2vprof.errors import SettingError
from w2vprof.files import write_text_atomic
from w2vprof.records import LAYER_COLUMNS, LAYER_RULES, RESULT_COLUMNS, RESULT_RULES, write_records_csv

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.measure.engine import ProfileConfig, ProfileResult

__all__ = ["write_profile"]


def write_profile(out: Path, config: ProfileConfig, result: ProfileResult) -> None:
    try:
        out.mkdir(parents=False, exist_ok=True)
        if result.layers:
            write_records_csv(out / "layers.csv", result.layers, LAYER_COLUMNS, LAYER_RULES)
            result.record.layers_file = "layers.csv"
        write_records_csv(out / "results.csv", [result.record], RESULT_COLUMNS, RESULT_RULES)
        write_text_atomic(out / "run.json", result.run_json(config))
    except OSError as exc:
        raise SettingError("out", f"{out}: cannot write ({exc.strerror})") from None
