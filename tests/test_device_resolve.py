"""The device resolver with a fake torch: what `auto` picks, and one clear error naming the setting otherwise; and
the one `synchronize` (CUDA and MPS faked)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

import pytest

from w2vprof.devices.resolve import check_device_name, resolve_device
from w2vprof.devices.sync import synchronize, synchronizer
from w2vprof.errors import BadInput


def fake_torch(cuda: bool, mps: Optional[bool]) -> SimpleNamespace:
    """mps=None: a torch build without torch.backends.mps (older torch, or not built for macOS)."""
    backends = SimpleNamespace() if mps is None else SimpleNamespace(mps=SimpleNamespace(is_available=lambda: mps))
    return SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: cuda), backends=backends)


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu"), (False, None, "cpu")],
)
def test_auto_prefers_cuda_then_mps_then_cpu(cuda, mps, expected):
    assert resolve_device("auto", fake_torch(cuda, mps)) == expected


def test_a_named_device_that_exists_is_kept():
    torch = fake_torch(cuda=True, mps=True)
    assert [resolve_device(name, torch) for name in ("cpu", "cuda", "mps")] == ["cpu", "cuda", "mps"]


@pytest.mark.parametrize("name", ["cuda", "mps"])
def test_a_device_this_machine_lacks_is_bad_input_naming_the_setting(name):
    with pytest.raises(BadInput, match=rf"^device '{name}': ") as caught:
        resolve_device(name, fake_torch(cuda=False, mps=None))
    assert "--" not in str(caught.value)  # names the setting, not a CLI flag
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("name", ["gpu", "CUDA", "", "cuda:0"])
def test_unknown_names_are_refused_before_torch_is_asked(name):
    with pytest.raises(BadInput, match="^device .* is unknown"):
        resolve_device(name, torch_module=object())  # never touched: the name alone decides


def test_auto_can_be_refused_where_a_concrete_device_is_needed():
    assert check_device_name("mps", allow_auto=False) == "mps"
    with pytest.raises(BadInput, match="choose from cpu, cuda, mps$"):
        check_device_name("auto", allow_auto=False)


# -- waiting for a device -----------------------------------------------------------------------------------------
def waiting_torch(waits: list[str]) -> SimpleNamespace:
    """A torch whose CUDA and MPS queues record each wait."""
    return SimpleNamespace(
        cuda=SimpleNamespace(synchronize=lambda: waits.append("cuda")),
        mps=SimpleNamespace(synchronize=lambda: waits.append("mps")),
    )


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_synchronize_waits_for_the_gpu_it_names(device):
    waits: list[str] = []
    synchronize(device, waiting_torch(waits))
    synchronizer(device, waiting_torch(waits))()
    assert waits == [device, device]


def test_synchronize_has_nothing_to_wait_for_on_the_cpu():
    waits: list[str] = []
    synchronize("cpu", waiting_torch(waits))
    assert waits == []


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_synchronize_reaches_the_real_torch_queues(device, monkeypatch):
    """Without a stand-in: torch's own cuda/mps synchronize is the one called (faked, so no GPU is needed)."""
    import torch
    import torch.mps

    waits: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: waits.append("cuda"))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: waits.append("mps"))
    synchronize(device)
    assert waits == [device]


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_calibration_waits_through_the_same_synchronize(device, monkeypatch):
    import w2vprof.devices.sync as sync
    from w2vprof.devices.calibrate import TorchOps

    waits: list[str] = []
    monkeypatch.setattr(sync, "synchronize", lambda name, torch_module=None: waits.append(name))
    TorchOps(device).sync()
    assert waits == [device]
