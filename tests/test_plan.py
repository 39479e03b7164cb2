"""`w2vprof plan` on synthetic results rows: exact arithmetic where the rows follow the model exactly, and every
way a plan can end (fits, nothing fits, no time, a paper device, bad input)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from conftest import run_cli_in_process
from w2vprof.analysis.plan import fit_cost, plan_recipes, target_for
from w2vprof.devices.profiles import load_profiles
from w2vprof.errors import BadInput
from w2vprof.records import RESULT_COLUMNS, ResultRecord, write_records_csv

GB = 1e9
LENGTHS = (1.0, 2.0, 4.0, 5.5)


def memory(a: float, b: float, c: float = 0.0):
    return lambda batch, seconds: a + b * batch * seconds + c * batch * seconds * seconds


def row(recipe: str, batch: int, seconds: float, peak: float, time: float, **fields) -> ResultRecord:
    values = dict(
        model="base",
        batch=batch,
        seconds=seconds,
        precision="fp32",
        device="cpu",
        status="ok",
        device_name="lab-cpu",
        recipe=recipe,
        peak_mem_bytes=int(peak),
        sec_per_batch_median=time,
    )
    values.update(fields)
    return ResultRecord(**values)


#: Two recipes measured at batch 4 and 1, 2, 4, 5.5 s: the default grows faster and is faster per step.
DEFAULT_MEMORY = memory(1.0 * GB, 0.09 * GB, 0.002 * GB)
CKPT_MEMORY = memory(1.0 * GB, 0.02 * GB)
DEFAULT_TIME = memory(0.1, 0.1, 0.001)
CKPT_TIME = memory(0.1, 0.12, 0.0012)


def rows(lengths=LENGTHS) -> list[ResultRecord]:
    out = []
    for seconds in lengths:
        out.append(row("default", 4, seconds, DEFAULT_MEMORY(4, seconds), DEFAULT_TIME(4, seconds)))
        out.append(row("ckpt=transformer", 4, seconds, CKPT_MEMORY(4, seconds), CKPT_TIME(4, seconds)))
    return out


def target(memory_gb: float, seconds: float = 8.0, device: str = "lab board", fraction: float = 1.0):
    return target_for(load_profiles(), device, int(memory_gb * GB), "base", 4, seconds, fraction)


def test_fits_recover_exact_arithmetic():
    points = [(4, s, DEFAULT_MEMORY(4, s)) for s in LENGTHS]
    fit = fit_cost(points)
    assert fit is not None and fit.c > 0
    assert fit.at(4, 8.0) == pytest.approx(DEFAULT_MEMORY(4, 8.0), rel=1e-9)
    assert fit.r2 == pytest.approx(1.0)
    # two lengths: a straight line through them
    line = fit_cost(points[:2])
    (_, _, at_1s), (_, _, at_2s) = points[:2]
    assert line is not None and line.c == 0 and line.at(4, 3.0) == pytest.approx(at_1s + 2 * (at_2s - at_1s))
    assert fit_cost(points[:1]) is None


def test_a_negative_square_term_falls_back_to_the_line():
    # cost shrinking with the square of the length is noise: the straight line is kept
    points = [(4, s, 10.0 + 2.0 * 4 * s - 0.01 * 4 * s * s) for s in LENGTHS]
    fit = fit_cost(points)
    assert fit is not None and fit.c == 0.0 and fit.b > 0


def test_recipes_that_fit_come_fastest_first_with_what_they_rest_on():
    plan = plan_recipes(rows(), target(6.0))
    by_recipe = {r.recipe: r for r in plan.rows}
    assert [r.recipe for r in plan.rows] == ["default", "ckpt=transformer"]  # both fit; default is faster
    assert by_recipe["default"].peak_mem_gb == pytest.approx(DEFAULT_MEMORY(4, 8.0) / GB, rel=1e-6)
    assert by_recipe["default"].sec_per_batch == pytest.approx(DEFAULT_TIME(4, 8.0), rel=1e-6)
    assert by_recipe["ckpt=transformer"].sec_per_batch == pytest.approx(CKPT_TIME(4, 8.0), rel=1e-6)
    assert by_recipe["default"].measured_rows == "batch 4: 1, 2, 4, 5.5 s"
    assert by_recipe["default"].time_basis == "fitted on lab-cpu"
    assert not by_recipe["default"].extrapolated  # 32 is within twice the largest measured 22
    assert plan.verdict.startswith("2 of 2 recipes fit") and "fastest: default" in plan.verdict


def test_a_tighter_device_leaves_only_the_checkpointed_recipe():
    limit = (DEFAULT_MEMORY(4, 8.0) + CKPT_MEMORY(4, 8.0)) / 2 / GB  # between the two predictions
    plan = plan_recipes(rows(), target(limit))
    assert [(r.recipe, r.fits) for r in plan.rows] == [("ckpt=transformer", True), ("default", False)]
    assert plan.rows[1].over_gb == pytest.approx((DEFAULT_MEMORY(4, 8.0) - limit * GB) / GB, rel=1e-6)
    assert "1 of 2 recipes fit" in plan.verdict and "fastest: ckpt=transformer" in plan.verdict


def test_nothing_fits_says_so_and_what_comes_closest():
    plan = plan_recipes(rows(), target(1.0))
    assert not any(r.fits for r in plan.rows)
    closest = CKPT_MEMORY(4, 8.0) / GB
    assert plan.verdict == (
        "Nothing fits: no measured recipe trains base at batch 4, 8 s (fp32) on lab board in 1.00 GB usable. "
        f"Closest: ckpt=transformer at {closest:.2f} GB, {closest - 1:.2f} GB over."
    )


def test_usable_fraction_scales_the_memory():
    plan = plan_recipes(rows(), target(10.0, fraction=0.5))
    assert plan.target.usable_bytes == pytest.approx(5 * GB)
    assert plan.rows[0].usable_gb == pytest.approx(5.0)


def test_a_recipe_measured_at_one_size_is_named_not_predicted():
    plan = plan_recipes(rows() + [row("freeze=cnn", 4, 5.5, 1.5 * GB, 0.5)], target(6.0))
    assert "freeze=cnn" not in {r.recipe for r in plan.rows}
    assert any(note.startswith("freeze=cnn: measured at 1 batch x seconds value(s) (22)") for note in plan.notes)


def test_a_paper_device_scales_its_table2_time_by_the_measured_ratio():
    # Jetson Xavier NX, base, batch 4, FP32: 1.78 s per batch in Table 2 (5.5 s utterances)
    nx = target_for(load_profiles(), "Jetson Xavier NX", None, "base", 4, 8.0, 0.7)
    assert nx.memory_gb == 8 and nx.usable_bytes == pytest.approx(5.6 * GB)
    plan = plan_recipes(rows(), nx)
    by_recipe = {r.recipe: r for r in plan.rows}
    ratio = CKPT_TIME(4, 8.0) / DEFAULT_TIME(4, 5.5)
    assert by_recipe["ckpt=transformer"].sec_per_batch == pytest.approx(1.78 * ratio, rel=1e-6)
    assert by_recipe["ckpt=transformer"].time_basis.startswith("Table 2 1.78 s (default, batch 4, 5.5 s) x ")
    # Table 2 has no batch-2 row: no time rather than this machine's
    plan2 = plan_recipes(
        [row(r.recipe, 2, r.seconds, r.peak_mem_bytes, 1.0) for r in rows()],
        target_for(load_profiles(), "Jetson Xavier NX", None, "base", 2, 8.0),
    )
    assert all(r.sec_per_batch is None and "no base fp32 row at batch 2" in r.time_basis for r in plan2.rows)
    assert "least memory: ckpt=transformer" in plan2.verdict and "no time" in plan2.verdict


def test_a_table2_out_of_memory_gives_no_time():
    large = [row(r.recipe, 4, r.seconds, r.peak_mem_bytes, r.sec_per_batch_median, model="large") for r in rows()]
    plan = plan_recipes(large, target_for(load_profiles(), "Jetson Xavier NX", None, "large", 4, 8.0))
    assert all(r.sec_per_batch is None and "Table 2 has oom there" in r.time_basis for r in plan.rows)


def test_rows_of_other_models_failed_rows_and_paper_rows_are_left_out():
    noise = [
        row("default", 4, 3.0, 99 * GB, 99.0, model="large"),
        row("default", 4, 3.0, 99 * GB, 99.0, status="oom"),
        row("default", 4, 3.0, 99 * GB, 99.0, source="paper"),
    ]
    plan = plan_recipes(rows() + noise, target(6.0))
    assert {r.recipe: r for r in plan.rows}["default"].peak_mem_gb == pytest.approx(DEFAULT_MEMORY(4, 8) / GB)


def test_bad_targets_are_bad_input():
    with pytest.raises(BadInput, match="unknown device 'Jetson Nano 3000' and no memory size given"):
        target_for(load_profiles(), "Jetson Nano 3000", None, "base", 4, 15.0)
    with pytest.raises(BadInput, match=r"usable_fraction must be in \(0, 1\], got 1.5"):
        target_for(load_profiles(), "Jetson Xavier NX", None, "base", 4, 15.0, 1.5)
    with pytest.raises(BadInput, match="no measured ok rows of tiny fp32"):
        plan_recipes(rows(), target_for(load_profiles(), None, 8 * 2**30, "tiny", 4, 15.0))
    # an unknown device with a memory size is fine: the size is the device
    named = target_for(load_profiles(), "Jetson Nano 3000", 4 * 10**9, "base", 4, 15.0)
    assert (named.device, named.memory_gb) == ("Jetson Nano 3000", 4.0)


# -- the command ---------------------------------------------------------------------------------------------------
@pytest.fixture
def results_file(tmp_path):
    path = tmp_path / "results.csv"
    write_records_csv(path, rows(), RESULT_COLUMNS)
    return path


def test_plan_command_table_csv_and_json(results_file, tmp_path):
    args = ["plan", str(results_file), "--device", "Jetson Xavier NX", "--model", "base", "--seconds", "8"]
    table = run_cli_in_process(*args)
    assert table.returncode == 0, table.stderr
    assert "Training recipes for base, batch 4, 8 s, fp32 on Jetson Xavier NX" in table.stdout
    assert "recipes fit base at batch 4, 8 s (fp32) on Jetson Xavier NX" in table.stdout
    as_csv = run_cli_in_process(*args, "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert {r["recipe"] for r in parsed} == {"default", "ckpt=transformer"}
    out = tmp_path / "plan.json"
    assert run_cli_in_process(*args, "--format", "json", "--out", str(out)).returncode == 0
    document = json.loads(out.read_text())
    assert document["target"]["device"] == "Jetson Xavier NX" and len(document["rows"]) == 2
    assert document["verdict"] and isinstance(document["notes"], list)


def test_plan_command_with_a_memory_size(results_file):
    result = run_cli_in_process(
        "plan", str(results_file), "--memory", "1.5GB", "--seconds", "8", "--usable-fraction", "1", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verdict"].startswith("Nothing fits")


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--device", "Jetson Nano 3000"], "unknown device 'Jetson Nano 3000' and no memory size given"),
        ([], "give a device (one of the profiles) or a memory size"),
        (["--memory", "lots"], "--memory must be a size such as 8GiB"),
        (["--device", "Jetson Xavier NX", "--usable-fraction", "0"], "--usable-fraction must be a positive number"),
        (["--device", "Jetson Xavier NX", "--usable-fraction", "1.5"], "--usable-fraction must be in (0, 1], got 1.5"),
        (["--device", "Jetson Xavier NX", "--format", "xml"], "unknown --format"),
    ],
)
def test_plan_command_bad_input_is_one_line(results_file, extra, fragment):
    result = run_cli_in_process("plan", str(results_file), "--seconds", "15", *extra)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("w2vprof: error: ") and fragment in lines[0]
