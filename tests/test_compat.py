"""The torch/torchaudio start-up check and the training probe (w2vprof.compat), with broken installs faked
in-process: a torchaudio whose import fails as an ABI mismatch does, one missing the wav2vec 2.0 builder, one from
another torch release, and a torch without torch.amp.GradScaler."""

from __future__ import annotations

import importlib.abc
import importlib.util
import re
import sys
import types
import warnings

import pytest

from w2vprof import compat
from w2vprof.cli.main import run
from w2vprof.compat import (
    IncompatibleInstall,
    check_model_support,
    grad_scaler,
    major_minor,
    model_support_problem,
    training_problem,
    version_pair_problem,
)
from w2vprof.errors import BadInput

UNDEFINED_SYMBOL = "/venv/lib/torchaudio/lib/libtorchaudio.so: undefined symbol: _ZNK3c105Error4whatEv"


@pytest.fixture(autouse=True)
def fresh_answer():
    """model_support_problem is cached per process: every test asks afresh, and leaves no fake answer behind."""
    model_support_problem.cache_clear()
    yield
    model_support_problem.cache_clear()


class _FailingImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds one package and fails to load it the way a wheel built for another torch does."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, fullname, path, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname == self.package else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise OSError(UNDEFINED_SYMBOL)


def _fail_import(monkeypatch, package: str) -> None:
    """`import package` fails from now until the test ends (the loaded modules come back afterwards)."""
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_FailingImport(package), *sys.meta_path])


@pytest.fixture
def torchaudio_fails_to_import(monkeypatch):
    _fail_import(monkeypatch, "torchaudio")


def _fake_torchaudio(monkeypatch, version: str, models: types.ModuleType) -> None:
    fake = types.ModuleType("torchaudio")
    fake.__version__ = version
    fake.models = models
    monkeypatch.setitem(sys.modules, "torchaudio", fake)
    monkeypatch.setitem(sys.modules, "torchaudio.models", models)


@pytest.mark.parametrize(
    "torch_version, torchaudio_version",
    [
        ("2.1.2", "2.1.2"),
        ("2.1.2+cu121", "2.1.2+cu121"),
        ("2.1.0a0+41361538.nv23.06", "2.1.0"),  # JetPack 5.1: NVIDIA's torch, torchaudio built for it
        ("2.0.1", "2.0.2"),  # the matrix pairs torch 2.0.1 with torchaudio 2.0.2
        ("1.13.1", "0.13.1"),
        ("2.11.0", "2.11.1"),
        ("2.14.1", "2.11.1"),  # torchaudio 2.11 on the stable ABI: every later torch too
        ("2.14.1", "weird"),  # unreadable: importing and building decide
    ],
)
def test_pairs_that_work(torch_version, torchaudio_version):
    assert version_pair_problem(torch_version, torchaudio_version) is None


@pytest.mark.parametrize(
    "torch_version, torchaudio_version, reason",
    [
        ("2.0.1", "2.4.0", "torchaudio 2.4 is built for torch 2.4 only"),
        ("2.4.0", "2.3.1", "torchaudio 2.3 is built for torch 2.3 only"),
        ("2.10.0", "2.11.0", "torchaudio 2.11 needs torch 2.11 or later"),
        ("2.0.0", "0.13.1", "torchaudio 0.13 is built for torch 1.13 only"),
    ],
)
def test_pairs_that_do_not(torch_version, torchaudio_version, reason):
    assert version_pair_problem(torch_version, torchaudio_version) == reason


@pytest.mark.parametrize(
    "version, refused",
    [
        ("1.13.1", True),
        ("1.12.0a0+2c916ef.nv22.3", True),
        ("2.0.0+nv23.05", False),
        ("2.1.0a0+41361538.nv23.06", False),
        ("2.3.1", False),
        ("2.4.0a0+3bcc3cddb5.nv24.07", False),
        ("2.4.1", False),
        ("2.14.1", False),
        ("nightly", False),
    ],
)
def test_torch_older_than_the_floor_is_refused(version, refused):
    problem = compat.torch_floor_problem(version)
    assert (problem is not None) == refused
    if refused:
        assert problem.startswith("w2vprof needs torch 2.0 or later")


def test_an_old_torch_is_one_line_naming_both_versions(monkeypatch):
    import torch

    monkeypatch.setattr(torch, "__version__", "1.13.1")
    problem = model_support_problem()
    assert problem.startswith("torch 1.13.1 with torchaudio ")
    assert "cannot build wav2vec 2.0 here: w2vprof needs torch 2.0 or later" in problem


def test_major_minor_reads_local_and_nvidia_versions():
    assert major_minor("2.3.0a0+40ec155e58.nv24.03") == (2, 3)
    assert major_minor("10.20") == (10, 20)
    assert major_minor("") is None


def test_the_installed_pair_builds_the_model():
    assert model_support_problem() is None
    check_model_support()


def test_torchaudio_import_failure_is_one_line_naming_both_versions(torchaudio_fails_to_import):
    import torch

    problem = model_support_problem()
    assert problem is not None and "\n" not in problem
    installed = compat.installed_version("torchaudio")
    assert problem.startswith(f"torch {torch.__version__} with torchaudio {installed} cannot build wav2vec 2.0 here")
    assert f"importing torchaudio failed: OSError: {UNDEFINED_SYMBOL}" in problem
    with pytest.raises(BadInput, match="undefined symbol"):
        check_model_support()


def test_torch_import_failure_names_both_versions(monkeypatch):
    torch_version, audio_version = compat.installed_version("torch"), compat.installed_version("torchaudio")
    _fail_import(monkeypatch, "torch")
    assert model_support_problem() == (
        f"torch {torch_version} with torchaudio {audio_version}: torch cannot be imported: OSError: "
        f"{UNDEFINED_SYMBOL}; {compat.HOW_TO_FIX}"
    )


def test_a_torchaudio_without_the_builder_is_reported(monkeypatch):
    _fake_torchaudio(monkeypatch, "2.1.2", types.ModuleType("torchaudio.models"))
    monkeypatch.setattr(compat, "version_pair_problem", lambda *versions: None)
    assert model_support_problem().endswith(
        "with torchaudio 2.1.2 cannot build wav2vec 2.0 here: torchaudio.models has no wav2vec2_model; "
        + compat.HOW_TO_FIX
    )


def test_a_builder_missing_arguments_is_reported(monkeypatch):
    models = types.ModuleType("torchaudio.models")
    models.wav2vec2_model = lambda extractor_mode, encoder_embed_dim: None
    _fake_torchaudio(monkeypatch, "2.1.2", models)
    monkeypatch.setattr(compat, "version_pair_problem", lambda *versions: None)
    assert "wav2vec2_model takes no extractor_conv_layer_config" in model_support_problem()


def test_a_torchaudio_from_another_release_is_reported(monkeypatch):
    import torch
    import torchaudio

    other = "2.0.2" if major_minor(torch.__version__) != (2, 0) else "2.4.0"
    _fake_torchaudio(monkeypatch, other, torchaudio.models)
    problem = model_support_problem()
    assert problem.startswith(f"torch {torch.__version__} with torchaudio {other} cannot build wav2vec 2.0 here")
    assert "is built for torch" in problem


def test_summary_exits_2_with_one_line_when_torchaudio_is_broken(torchaudio_fails_to_import, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(["summary", "--model", "tiny"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("w2vprof: error: torch ")
    assert "cannot build tiny here" in err and "Traceback" not in err


@pytest.mark.integration
def test_training_probe_works_on_cpu_in_both_precisions():
    import torch

    assert training_problem("cpu") is None
    assert training_problem("cpu", autocast_dtype=torch.bfloat16) is None


@pytest.mark.integration
def test_training_probe_reports_the_failure_in_one_line(monkeypatch):
    import torch

    def broken_forward(self, x):
        raise RuntimeError("no kernel image is available for execution on the device\nCUDA kernel errors ...")

    monkeypatch.setattr(torch.nn.Linear, "forward", broken_forward)
    assert training_problem("cpu") == "RuntimeError: no kernel image is available for execution on the device"


def test_grad_scaler_falls_back_before_torch_2_3(monkeypatch):
    """torch.amp.GradScaler(device) is torch >= 2.3: before it, CUDA has torch.cuda.amp.GradScaler, MPS none."""
    import torch

    monkeypatch.delattr(torch.amp, "GradScaler", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated on new torch; "CUDA is not available" on this machine
        assert isinstance(grad_scaler("cuda"), torch.cuda.amp.GradScaler)
    with pytest.raises(IncompatibleInstall, match="no gradient scaler for mps"):
        grad_scaler("mps")


def _exits_2_naming_the_pair(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    # the sweep checks the pair before it reads its grid (wav2vec 2.0); fl simulate names its model
    assert err.count("\n") == 1 and re.search(
        r"cannot build (wav2vec 2\.0|tiny) here: importing torchaudio failed", err
    )


def test_sweep_stops_before_any_child_when_torchaudio_is_broken(
    torchaudio_fails_to_import, monkeypatch, tmp_path, capsys
):
    import w2vprof.sweep.runner

    def started(*args, **kwargs):
        raise AssertionError("the sweep started")

    monkeypatch.setattr(w2vprof.sweep.runner, "run_sweep", started)
    _exits_2_naming_the_pair(["sweep", "--out", str(tmp_path / "results.csv"), "--model", "tiny"], capsys)
    assert not (tmp_path / "results.csv").exists()


def test_fl_simulate_stops_before_flower_starts_when_torchaudio_is_broken(
    torchaudio_fails_to_import, monkeypatch, tmp_path, capsys
):
    pytest.importorskip("flwr")
    import w2vprof.fl.simulate

    def started(*args, **kwargs):
        raise AssertionError("the simulation started")

    monkeypatch.setattr(w2vprof.fl.simulate, "simulate", started)
    _exits_2_naming_the_pair(["fl", "simulate", "--out", str(tmp_path / "run"), "--clients", "2"], capsys)


@pytest.mark.parametrize(
    "torch_version, numpy_version, refused",
    [
        ("2.1.2", "2.1.3", True),
        ("2.0.0+nv23.05", "2.0.0", True),
        ("2.2.2", "2.3.0", True),
        ("2.1.2", "1.26.4", False),
        ("2.3.1", "2.1.3", False),
        ("2.14.1", "2.4.0", False),
        ("2.1.2", "", False),
    ],
)
def test_torch_before_2_3_needs_numpy_1(torch_version, numpy_version, refused):
    """torch 2.0-2.2 were built against NumPy 1: with NumPy 2, torch.from_numpy raises "Numpy is not available"."""
    problem = compat.numpy_pair_problem(torch_version, numpy_version)
    assert (problem is not None) == refused
    if refused:
        assert "install numpy<2" in problem


def test_an_old_torch_with_numpy_2_is_one_line_before_importing_torch(monkeypatch):
    """Read from the installed versions: importing such a torch prints NumPy's multi-line warning first."""
    versions = {"torch": "2.1.2", "torchaudio": "2.1.2", "numpy": "2.1.3"}
    monkeypatch.setattr(compat, "installed_version", versions.get)
    monkeypatch.setitem(sys.modules, "torch", None)  # importing it would fail the test
    problem = model_support_problem()
    assert problem.startswith("torch 2.1.2 with torchaudio ")
    assert "cannot train wav2vec 2.0 here: torch 2.1 was built against NumPy 1" in problem
    assert "\n" not in problem


@pytest.mark.parametrize(
    "model, builder",
    [("hubert-base", "hubert_pretrain_model"), ("wavlm-base", "wavlm_model"), ("base", "wav2vec2_model")],
)
def test_a_torchaudio_without_a_familys_builder_names_the_model_and_the_builder(monkeypatch, model, builder):
    """A torchaudio that builds wav2vec 2.0 but not HuBERT (or WavLM) is refused for that model only, in one
    line naming the model and the missing builder (checked before any file is written: sweep and fl call it)."""
    import torchaudio
    import torchaudio.models.wav2vec2.components

    from w2vprof.models import get_family

    models = types.ModuleType("torchaudio.models")
    for name in compat.BUILDER_NEEDS:
        if name != builder:
            setattr(models, name, getattr(torchaudio.models, name))
    _fake_torchaudio(monkeypatch, "2.11.0", models)
    monkeypatch.setattr(compat, "version_pair_problem", lambda *versions: None)
    with pytest.raises(BadInput) as refused:
        get_family(model).check_support()
    line = str(refused.value)
    assert f"cannot build {model} here: torchaudio.models has no {builder}; " in line and "\n" not in line
    others = [
        other
        for other in ("base", "hubert-base", "wavlm-base")
        if builder not in get_family(other).torchaudio_builders()
    ]
    for other in others:
        get_family(other).check_support()  # the builders it calls are there


def test_a_builder_without_an_argument_the_family_passes_is_named(monkeypatch):
    import torchaudio

    def hubert_pretrain_model(extractor_mode, encoder_embed_dim):  # an old signature
        raise AssertionError("not called")

    models = types.ModuleType("torchaudio.models")
    models.wav2vec2_model = torchaudio.models.wav2vec2_model
    models.hubert_pretrain_model = hubert_pretrain_model
    _fake_torchaudio(monkeypatch, "2.11.0", models)
    monkeypatch.setattr(compat, "version_pair_problem", lambda *versions: None)
    problem = model_support_problem(("wav2vec2_model", "hubert_pretrain_model"), "hubert-base")
    assert (
        "cannot build hubert-base here: torchaudio.models.hubert_pretrain_model takes no extractor_conv_layer_config"
        in problem
    )
