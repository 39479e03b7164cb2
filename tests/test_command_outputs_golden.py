"""Every read-only command's output, byte for byte, against the files in tests/golden/commands/.

Each case runs `w2vprof ARGS` in a fresh folder holding a `data` link to tests/data, so every path a command
prints is the relative one given here. The terminal tables are read from `--out` (plain: no colour, full width);
csv, json and md from stdout. What a run reads from the host (hostname, core count, a doctor's probes, a
calibration) is faked, so the files hold on any machine. A changed file is a changed output: a fix says so in its
commit; rewrite the goldens with W2VPROF_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Optional

import pytest

from conftest import run_cli_in_process

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden" / "commands"

PAPER_A40 = ("--reference", "paper", "--baseline", "NVIDIA A40")
LAYER_RUNS = ("data/views/fast/results.csv", "data/views/board/results.csv")
PLAN = ("plan", "data/views/recipes.csv", "--device", "Jetson Xavier NX", "--seconds", "8")
FLEET = ("fl-estimate", "--reference", "paper", "--fleet", "data/fleet_pi_nx.csv", "--clients-per-round", "20")
FORECAST = ("forecast", "--device", "Jetson Xavier NX")

#: golden file -> the command's arguments; a table is written with --out (plain), the rest read from stdout. The
#: .md files of all but compare pin the Markdown every view gained with the view pipeline.
CASES: dict[str, tuple[str, ...]] = {
    "summary_base.csv": ("summary", "--model", "base", "--format", "csv"),
    "summary_base.json": ("summary", "--model", "base", "--format", "json"),
    "summary_base.txt": ("summary", "--model", "base"),
    "summary_base.md": ("summary", "--model", "base", "--format", "md"),
    "summary_tiny_layers.csv": ("summary", "--model", "tiny", "--seconds", "1", "--layers", "--format", "csv"),
    "summary_tiny_layers.json": ("summary", "--model", "tiny", "--seconds", "1", "--layers", "--format", "json"),
    "summary_tiny_layers.txt": ("summary", "--model", "tiny", "--seconds", "1", "--layers"),
    "compare_paper.csv": ("compare", *PAPER_A40, "--format", "csv"),
    "compare_paper.json": ("compare", *PAPER_A40, "--format", "json"),
    "compare_paper.md": ("compare", *PAPER_A40, "--format", "md"),
    "compare_paper.txt": ("compare", *PAPER_A40),
    "compare_small.csv": ("compare", "data/small.csv", "--reference", "paper", "--format", "csv"),
    "compare_small.json": ("compare", "data/small.csv", "--reference", "paper", "--format", "json"),
    "compare_small.txt": ("compare", "data/small.csv", "--reference", "paper", "--seconds", "1"),
    "compare_layers.csv": ("compare", "--layers", *LAYER_RUNS, "--format", "csv"),
    "compare_layers.json": ("compare", "--layers", *LAYER_RUNS, "--format", "json"),
    "compare_layers.md": ("compare", "--layers", *LAYER_RUNS, "--format", "md", "--baseline", "small board"),
    "compare_layers.txt": ("compare", "--layers", *LAYER_RUNS),
    "plan.csv": (*PLAN, "--format", "csv"),
    "plan.json": (*PLAN, "--format", "json"),
    "plan.txt": PLAN,
    "plan.md": (*PLAN, "--format", "md"),
    "plan_nothing_fits.json": (*PLAN[:2], "--memory", "2GiB", "--seconds", "8", "--format", "json"),
    "plan_nothing_fits.txt": (*PLAN[:2], "--memory", "2GiB", "--seconds", "8"),
    "feasibility.csv": ("feasibility", "data/small.csv", "--format", "csv"),
    "feasibility.json": ("feasibility", "data/small.csv", "--format", "json"),
    "feasibility.txt": ("feasibility", "data/small.csv"),
    "feasibility.md": ("feasibility", "data/small.csv", "--format", "md"),
    "feasibility_nx.txt": ("feasibility", "data/small.csv", "--device", "Jetson Xavier NX", "--batch", "4"),
    "fl_estimate.csv": ("fl-estimate", "--reference", "paper", "--format", "csv"),
    "fl_estimate.json": ("fl-estimate", "--reference", "paper", "--format", "json"),
    "fl_estimate.txt": ("fl-estimate", "--reference", "paper"),
    "fl_estimate.md": ("fl-estimate", "--reference", "paper", "--format", "md"),
    "fl_estimate_small.csv": ("fl-estimate", "data/small.csv", "--bandwidth", "50", "--format", "csv"),
    "fl_estimate_small.txt": ("fl-estimate", "data/small.csv", "--bandwidth", "50", "--clients-per-round", "5"),
    "fl_estimate_fleet.csv": (*FLEET, "--deadline", "25000", "--format", "csv"),
    "fl_estimate_fleet.json": (*FLEET, "--over-commit", "1.5", "--seed", "3", "--format", "json"),
    "fl_estimate_fleet.txt": (*FLEET, "--deadline", "25000", "--over-commit", "1.5"),
    "fl_estimate_fleet.md": (*FLEET, "--deadline", "25000", "--format", "md"),
    "forecast.csv": (*FORECAST, "--format", "csv"),
    "forecast.json": (*FORECAST, "--format", "json"),
    "forecast.txt": FORECAST,
    "forecast.md": (*FORECAST, "--format", "md"),
    "forecast_no_wait.txt": ("forecast", "--device", "NVIDIA A40", "--target", "Jetson Xavier NX"),
}


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A folder of the test's own with `data` -> tests/data, as the working directory; no colour or width from
    the environment."""
    (tmp_path / "data").symlink_to(DATA, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for name in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "TERM"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("W2VPROF_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"no golden file {name} (W2VPROF_UPDATE_GOLDEN=1 writes it)"
    golden = path.read_text(encoding="utf-8")
    if text != golden and _same_but_last_bits(text, golden):
        return
    assert text == golden, f"{name} differs from its golden file (W2VPROF_UPDATE_GOLDEN=1)"


#: A number as the commands write it (a full-precision float in CSV or JSON included).
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _same_but_last_bits(text: str, golden: str) -> bool:
    """The same text with every number equal to 1e-9 relative: a least-squares fit (plan, feasibility) written at
    full precision differs in its last bits between BLAS builds (found on aarch64: 4.391999999999998 against
    x86's 4.392000000000002). Everything else must match byte for byte."""
    if NUMBER.split(text) != NUMBER.split(golden):
        return False
    pairs = zip(NUMBER.findall(text), NUMBER.findall(golden))
    return len(NUMBER.findall(text)) == len(NUMBER.findall(golden)) and all(
        mine == theirs or math.isclose(float(mine), float(theirs), rel_tol=1e-9, abs_tol=1e-12)
        for mine, theirs in pairs
    )


def test_numbers_in_their_last_bits_are_the_same_output_and_nothing_else_is():
    assert _same_but_last_bits('{"peak_gb": 4.391999999999998}', '{"peak_gb": 4.392000000000002}')
    assert _same_but_last_bits("a,1.6400000000000006,b", "a,1.64,b")
    assert not _same_but_last_bits('{"peak_gb": 4.39}', '{"peak_gb": 4.392000000000002}')
    assert not _same_but_last_bits("fits: yes 4.392000000000002", "fits: no 4.392000000000002")
    assert not _same_but_last_bits("1, 2", "1, 2, 3")


def _output(args: tuple[str, ...], out: Optional[Path] = None) -> str:
    """What the command gives: stdout, or the file --out names (then stdout must stay empty)."""
    result = run_cli_in_process(*args, *(("--out", str(out)) if out is not None else ()))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    if out is None:
        return result.stdout
    assert result.stdout == ""
    return out.read_text(encoding="utf-8")


#: summarize()'s rows by its arguments: the counting pass runs once for the three formats of one summary.
_SUMMARIES: dict[tuple, list] = {}


@pytest.fixture
def counted_once(monkeypatch):
    """`summary` counts each model and input once per session (a base count takes about a second); the goldens pin
    how its rows are shown, tests/test_summary.py and tests/golden/numbers the counts themselves."""
    import w2vprof.measure.summary as summary

    count = summary.summarize

    def cached(*args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        if key not in _SUMMARIES:
            _SUMMARIES[key] = count(*args, **kwargs)
        return _SUMMARIES[key]

    monkeypatch.setattr(summary, "summarize", cached)


@pytest.mark.parametrize("name", sorted(CASES))
def test_command_output_matches_golden(name, workdir, counted_once):
    table = name.endswith(".txt")
    _golden(name, _output(CASES[name], workdir / "table.txt" if table else None))


# -- devices, on a fake Jetson -------------------------------------------------------------------------------
def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def jetson_root(workdir, monkeypatch) -> Path:
    """A Xavier NX's files (as tests/test_devices_identity.py's), with a fixed hostname and core count."""
    import socket

    root = workdir / "jetson"
    _write(root / "etc/nv_tegra_release", "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref\n")
    _write(root / "proc/device-tree/model", "NVIDIA Jetson Xavier NX Developer Kit\x00")
    _write(root / "var/lib/nvpmodel/status", "pmode:0008\n")
    _write(root / "etc/nvpmodel.conf", "< POWER_MODEL ID=8 NAME=MODE_20W_6CORE >\n")
    _write(root / "proc/cpuinfo", "processor\t: 0\nmodel name\t: ARMv8 Processor rev 0 (v8l)\n")
    _write(root / "proc/meminfo", "MemTotal: 7772000 kB\nMemFree: 500000 kB\nMemAvailable: 3000000 kB\n")
    hwmon = root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    _write(hwmon / "in1_label", "VDD_IN\n")
    _write(hwmon / "in1_input", "5000\n")
    _write(hwmon / "curr1_input", "800\n")
    monkeypatch.setattr(socket, "gethostname", lambda: "nx-board")
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    return root


@pytest.mark.parametrize("name, fmt", [("devices_jetson.json", "json"), ("devices_jetson.txt", "table")])
def test_devices_output_matches_golden(name, fmt, jetson_root):
    _golden(name, _output(("devices", "--device", "cpu", "--root", "jetson", "--format", fmt)))


@pytest.fixture
def fake_calibration(monkeypatch):
    """`devices --calibrate` finds this calibration (and names this cache file) instead of this machine's."""
    import w2vprof.devices.calibrate as calibrate

    fake = calibrate.Calibration(
        device="cpu",
        device_fingerprint="0123456789ab",
        device_name="Lab CPU",
        peak_flops_fp32_measured=123.4e9,
        peak_flops_mixed_measured=None,
        mixed_dtype="bfloat16",
        mem_bw_measured=12.5e9,
        matmul_size_fp32=2048,
        matmul_size_mixed=2048,
        copy_bytes=2**28,
        repeats=5,
        peak_flops_fp32_vendor=1.5e12,
        peak_flops_mixed_vendor=None,
        vendor_profile="Lab board",
        threads=2,
        torch_version="2.4.0",
        measured_at="2026-01-01T00:00:00+00:00",
        note="bfloat16 matmul failed: not supported here",
    )
    monkeypatch.setattr(calibrate, "load_or_calibrate", lambda device, refresh=False: fake)
    monkeypatch.setattr(calibrate, "cache_path", lambda fingerprint, threads, folder=None: Path("cache/calib.json"))
    return fake


@pytest.mark.parametrize("name, fmt", [("devices_calibrate.json", "json"), ("devices_calibrate.txt", "table")])
def test_devices_calibrate_output_matches_golden(name, fmt, workdir, fake_calibration):
    _golden(name, _output(("devices", "--device", "cpu", "--calibrate", "--format", fmt)))


# -- doctor, on fixed findings ---------------------------------------------------------------------------------
@pytest.fixture
def fake_diagnosis(monkeypatch):
    """The doctor's probes (a real training step, this machine's versions) replaced by fixed findings."""
    from w2vprof import doctor

    sections = {
        "install": [doctor.Check("model_support", "ok", "this torch/torchaudio pair can build wav2vec 2.0")],
        "devices": [
            doctor.Check("cpu", "ok", "trains"),
            doctor.Check("cuda", "no", "torch.cuda.is_available() is False"),
            doctor.Check("mps", "failed", "RuntimeError: mps probe exploded"),
        ],
        "precisions": [doctor.Check("cpu fp32", "ok", "float32"), doctor.Check("cpu mixed", "ok", "bfloat16")],
        "peak_memory": [doctor.Check("cpu", "ok", "rss_hwm: 1.2 GB")],
        "telemetry": [doctor.Check("rapl", "no", "no RAPL in /sys/class/powercap")],
        "training_step": [doctor.Check("tiny", "ok", "tiny, batch 1, 1 s: 0.123 s", seconds=0.123)],
    }
    report = doctor.DoctorReport(
        {"w2vprof": "0.0.0", "python": "3.11.7 (CPython)", "torch": "2.4.0", "flwr": "not installed"},
        {"system": "Linux", "machine": "x86_64", "board": "", "cpu": "Lab CPU, 2 cores"},
        sections,
        12.345,
    )
    monkeypatch.setattr(doctor, "diagnose", lambda: report)


@pytest.mark.parametrize("name, fmt", [("doctor.json", "json"), ("doctor.txt", "text")])
def test_doctor_output_matches_golden(name, fmt, workdir, fake_diagnosis):
    _golden(name, _output(("doctor", "--format", fmt)))


# -- report: what it prints and every file it writes but the figures ---------------------------------------------
def _report_files(folder: Path, prefix: str, skip: tuple[str, ...]) -> None:
    """Each file of a report folder against its golden (`prefix` + its name), and the list of names itself."""
    names = sorted(path.name for path in folder.iterdir())
    _golden(f"{prefix}files.txt", "".join(f"{name}\n" for name in names))
    for name in names:
        if not name.endswith(skip):
            _golden(prefix + name, (folder / name).read_text(encoding="utf-8"))


def test_report_without_figures_matches_golden(workdir):
    """Table 1, Table 2 with the paper, the results and the environment; one length and no layers: no figure."""
    args = ("report", "data/summary_tiny.csv", "data/views/one_length.csv", "--reference", "paper")
    _golden("report_small/stdout.txt", _output((*args, "--format", "latex", "--out", "report")))
    _report_files(workdir / "report", "report_small/", skip=())


@pytest.mark.integration  # draws the figures (matplotlib)
def test_report_with_figures_matches_golden(workdir):
    """Every table a report can hold but the fleet's: recipes, seconds per layer; the figures by name and caption."""
    inputs = ("data/summary_tiny.csv", "data/small.csv", "data/views/recipes.csv", "data/views/fast/results.csv")
    args = ("report", *inputs)
    _golden("report_full/stdout.txt", _output((*args, "--out", "report")))
    _report_files(workdir / "report", "report_full/", skip=(".png", ".html"))


# -- the views of commands that measure or write: profile's table, partition's ----------------------------------
def test_profile_table_matches_golden(workdir, capsys):
    """What `profile` prints after measuring, for a default run with timed layers and a recipe's run."""
    from w2vprof.cli.profile import print_record
    from w2vprof.records import read_layers_csv, read_results_csv, replace

    (row,) = read_results_csv(DATA / "views" / "fast" / "results.csv")
    timed = replace(
        row,
        sec_per_batch_mean=1.1,
        sec_per_batch_std=0.05,
        sec_per_batch_iqr=0.04,
        sec_per_sequence=0.25,
        fwd_flops=2_000_000_000,
        bwd_flops=4_000_000,
        optim_flops=1_000,
        achieved_flops_per_sec=3.5e9,
        act_mem_bytes=1_500_000_000,
        peak_mem_bytes=2_600_000_000,
        peak_mem_source="rss_hwm",
        energy_source="rapl",
        energy_j_per_batch=12.5,
        notes="a note",
    )
    print_record(timed, read_layers_csv(DATA / "views" / "fast" / "layers.csv"))
    recipe = read_results_csv(DATA / "views" / "recipes.csv")[1]
    oom = replace(recipe, status="oom", error="out of memory", sec_per_batch_median=None, peak_mem_bytes=None)
    print_record(replace(oom, compile_sec=3.25, trainable_params=1_234_567), [])
    _golden("profile.txt", capsys.readouterr().out)


def test_partition_output_matches_golden(workdir):
    """Three speakers' clips of fixed lengths split into two clients."""
    import numpy as np
    import soundfile as sf

    (workdir / "clips").mkdir()
    lines = ["client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment"]
    for index, seconds in enumerate((0.5, 0.25, 0.75, 0.5)):
        name = f"cv_{index}.wav"
        sf.write(str(workdir / "clips" / name), np.zeros(int(8000 * seconds)), 8000)
        lines.append(f"speaker{index % 3}\t{name}\tsentence {index}\t2\t0\t\t\t\tit\t")
    (workdir / "validated.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _golden("partition.txt", _output(("partition", "validated.tsv", "--clients", "2", "--out", "clients")))
