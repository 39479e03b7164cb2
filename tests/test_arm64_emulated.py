"""The committed emulated aarch64 results (reports/arm64-emulated/, written by .ci/arm64-emulated.sh): each row names
itself emulated, every configuration is `ok`, and every FLOP and byte equals x86's (the x86 reference sweep of the
same grid, and the golden tiny profile), as the script's own checks (.ci/arm64_checks.py) find them."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parent.parent
EMULATED = ROOT / "reports" / "arm64-emulated"
X86 = EMULATED / "x86-reference" / "results.csv"
GOLDEN = Path(__file__).parent / "golden" / "numbers"


@pytest.fixture(scope="module")
def checks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("arm64_checks", ROOT / ".ci" / "arm64_checks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_emulated_sweep_has_x86s_flops_and_bytes(checks, monkeypatch):
    monkeypatch.delenv("W2VPROF_CHECKS", raising=False)
    assert checks.check_rows(EMULATED / "sweep" / "results.csv", X86, GOLDEN / "profile_tiny_b2_1s.json") == []
    assert len(_rows(EMULATED / "sweep" / "results.csv")) == len(_rows(X86)) == 4


def test_the_emulated_summary_has_x86s_params_and_flops(checks, monkeypatch):
    monkeypatch.delenv("W2VPROF_CHECKS", raising=False)
    assert checks.check_summary(EMULATED / "summary-base.csv", GOLDEN / "summary_base_5.5.csv") == []


def test_each_emulated_row_says_it_was_emulated_and_the_x86_rows_do_not():
    """Their seconds mean nothing: the device is named 'aarch64 (... emulation?)', never a board or the host."""
    for row in _rows(EMULATED / "sweep" / "results.csv"):
        assert "emulation?" in row["device_name"] and row["bf16_native"] == "false", row["device_name"]
    assert not any("emulation?" in row["device_name"] for row in _rows(X86))


def test_a_difference_in_one_flop_or_byte_is_found(checks, monkeypatch, tmp_path):
    monkeypatch.delenv("W2VPROF_CHECKS", raising=False)
    rows = _rows(EMULATED / "sweep" / "results.csv")
    rows[0]["act_mem_bytes"] = str(int(rows[0]["act_mem_bytes"]) + 1)
    changed = tmp_path / "results.csv"
    with open(changed, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    problems = checks.check_rows(changed, X86, GOLDEN / "profile_tiny_b2_1s.json")
    assert len(problems) == 1 and "act_mem_bytes" in problems[0]
