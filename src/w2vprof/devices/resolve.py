"""The one device resolver: `auto` -> cuda, else mps, else cpu; a device this machine lacks is bad input.

Used by the measurement engine, the sweep, `devices` and federated clients and server. Errors name the setting
(`device`), not a command-line flag: the same library runs under the CLI and under Flower's `flwr run`, whose
users set a run-config key.
"""

from __future__ import annotations

from typing import Any, Optional

from w2vprof.errors import SettingError

__all__ = ["AUTO", "DEVICE_KINDS", "check_device_name", "mps_available", "resolve_device"]

AUTO = "auto"
DEVICE_KINDS = ("cpu", "cuda", "mps")  # torch device types w2vprof measures on


def _import_torch() -> Any:
    import torch
    import torch.mps  # torch 2.0 does not import it with torch; the engine calls torch.mps.synchronize

    return torch


def check_device_name(requested: str, allow_auto: bool = True) -> str:
    """The name alone (no torch needed): one of DEVICE_KINDS, or `auto` where allowed; else SettingError."""
    choices = ((AUTO,) if allow_auto else ()) + DEVICE_KINDS
    if requested not in choices:
        raise SettingError.unknown("device", requested, choices)
    return requested


def mps_available(torch_module: Any = None) -> bool:
    """Whether torch can use Apple's MPS here (older torch builds have no torch.backends.mps at all)."""
    torch = torch_module if torch_module is not None else _import_torch()
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(requested: str, torch_module: Optional[Any] = None) -> str:
    """`auto` -> cuda, else mps, else cpu; a named device must be usable here. Returns cpu, cuda or mps.

    `torch_module` stands in for torch in tests (a fake with cuda.is_available and backends.mps.is_available).
    """
    check_device_name(requested)
    torch = torch_module if torch_module is not None else _import_torch()
    has_cuda = bool(torch.cuda.is_available())
    has_mps = mps_available(torch)
    if requested == AUTO:
        return "cuda" if has_cuda else "mps" if has_mps else "cpu"
    if requested == "cuda" and not has_cuda:
        raise SettingError("device", "'cuda': torch sees no CUDA device on this machine")
    if requested == "mps" and not has_mps:
        raise SettingError("device", "'mps': Apple MPS is not available on this machine")
    return requested
