"""The device resolver with a fake torch: what `auto` picks, and one clear error naming the setting otherwise."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

import pytest

from w2vprof.devices.resolve import check_device_name, resolve_device
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
