"""`w2vprof doctor`, in-process: the JSON parses and has every section, the CPU really trains, and a probe that
raises is reported as failed (with its one line) while the others still run."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from w2vprof import doctor
from w2vprof.cli.main import app, run
from w2vprof.report.machine_views import doctor_view
from w2vprof.report.views import render

KEYS = {"versions", "machine", *doctor.SECTIONS, "elapsed_s"}


def _doctor_json() -> dict:
    result = CliRunner().invoke(app, ["doctor", "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture(scope="module")
def report() -> dict:
    """One real run (about 10 s on a loaded 2-core machine, most of it importing torch and AdamW's first step)."""
    return _doctor_json()


def _by_name(checks: list[dict]) -> dict[str, dict]:
    return {check["name"]: check for check in checks}


def test_json_has_every_section(report):
    assert set(report) == KEYS
    assert report["versions"]["torch"] not in ("", "not installed")
    assert report["machine"]["machine"]
    for section in doctor.SECTIONS:
        for check in report[section]:
            assert set(check) == {"name", "status", "detail", "seconds"}
            assert check["status"] in ("ok", "no", "failed")


def test_the_cpu_trains_and_is_timed(report):
    devices = _by_name(report["devices"])
    assert list(devices) == ["cpu", "cuda", "mps"]
    assert devices["cpu"]["status"] == "ok"
    assert _by_name(report["install"])["model_support"]["status"] == "ok"
    assert _by_name(report["precisions"])["cpu fp32"]["status"] == "ok"
    assert _by_name(report["peak_memory"])["cpu"]["status"] == "ok"
    (step,) = report["training_step"]
    assert step["status"] == "ok", step["detail"]
    assert step["seconds"] > 0 and "s per step" in step["detail"]


def test_text_lists_every_check(report):
    text = render(doctor_view(report), "text")
    for section in doctor.SECTIONS:
        for check in report[section]:
            assert check["name"] in text
    assert text.startswith("w2vprof doctor\n") and "Traceback" not in text


def test_a_probe_that_raises_is_reported_not_propagated(monkeypatch):
    def broken_device(kind):
        raise RuntimeError(f"{kind} probe exploded\nsecond line")

    def broken_step():
        raise OSError("libtorch_cpu.so: cannot open shared object file")

    def broken_section():
        raise ValueError("install section exploded")

    monkeypatch.setattr(doctor, "_device_available", broken_device)
    monkeypatch.setattr(doctor, "_training_step", broken_step)
    monkeypatch.setattr(doctor, "install_checks", broken_section)
    report = _doctor_json()
    devices = _by_name(report["devices"])
    assert devices["cuda"] == {
        "name": "cuda",
        "status": "failed",
        "detail": "RuntimeError: cuda probe exploded",
        "seconds": None,
    }
    assert report["precisions"] == [] and report["peak_memory"] == []  # no device known to work: nothing to try
    assert report["install"] == [
        {"name": "install", "status": "failed", "detail": "ValueError: install section exploded", "seconds": None}
    ]
    assert report["training_step"][0]["status"] == "failed"
    assert report["training_step"][0]["detail"] == "OSError: libtorch_cpu.so: cannot open shared object file"
    assert report["telemetry"], "the other probes still ran"


def test_unknown_format_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(["doctor", "--format", "xml"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "w2vprof: error: unknown --format 'xml'; choose from text, json\n"


def test_a_cuda_device_is_described_and_its_mixed_precision_uses_float16_with_a_scaler(monkeypatch):
    """The CUDA branches, with torch.cuda faked (no GPU here): what the line says, and what the probe is asked."""
    import types

    import torch

    asked = []

    def fake_probe(device, autocast_dtype=None, scaled=False):
        asked.append((device, autocast_dtype, scaled))  # and works: returns no problem

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (8, 7))
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda index=0: types.SimpleNamespace(name="Orin", total_memory=int(7.4 * 2**30)),
    )
    monkeypatch.setattr(doctor, "training_problem", fake_probe)
    checks, usable = doctor.device_checks()
    assert _by_name([vars(c) for c in checks])["cuda"]["detail"] == "Orin, capability 8.7, 7.4 GiB"
    assert "cuda" in usable
    status, detail = doctor._precision("cuda", "mixed")
    assert (status, detail) == ("ok", "autocast float16 with a gradient scaler, backward, AdamW step")
    assert asked[-1] == ("cuda", torch.float16, True)


def test_a_precision_that_fails_says_why(monkeypatch):
    monkeypatch.setattr(
        doctor,
        "training_problem",
        lambda device, autocast_dtype=None, scaled=False: (
            "RuntimeError: MPS autocast only supports float16" if autocast_dtype is not None else None
        ),
    )
    assert doctor._precision("mps", "mixed") == ("no", "float16: RuntimeError: MPS autocast only supports float16")
    assert doctor._precision("mps", "fp32")[0] == "ok"


def test_cpu_mixed_precision_says_bfloat16_is_emulated_only_where_it_is(cpu_native_bf16, monkeypatch):
    monkeypatch.setattr(doctor, "training_problem", lambda device, autocast_dtype=None, scaled=False: None)
    status, detail = doctor._precision("cpu", "mixed")
    ran = "autocast bfloat16, backward, AdamW step"
    emulated = " (no native bfloat16 on this CPU: emulated, often slower than fp32)"
    assert (status, detail) == ("ok", ran if cpu_native_bf16 else ran + emulated)
