"""Waiting for a device: the one `synchronize` every timer in w2vprof calls around the work it times.

CUDA and MPS queue their kernels and return at once, so a clock read right after a step measures the queueing,
not the work; waiting for the device first makes the clock see the work. The CPU runs synchronously: nothing to
wait for.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

__all__ = ["synchronizer", "synchronize"]


def synchronizer(device: str, torch_module: Optional[Any] = None) -> Callable[[], None]:
    """The function that waits for `device` (cpu | cuda | mps) to finish its queued work (does nothing on cpu).

    `torch_module` stands in for torch in tests (a fake with cuda.synchronize and mps.synchronize)."""
    if device not in ("cuda", "mps"):
        return _nothing_queued
    if torch_module is None:
        import torch
        import torch.mps  # torch 2.0 does not import it with torch

        torch_module = torch
    return torch_module.cuda.synchronize if device == "cuda" else torch_module.mps.synchronize


def synchronize(device: str, torch_module: Optional[Any] = None) -> None:
    """Wait until `device` (cpu | cuda | mps) has finished its queued work."""
    synchronizer(device, torch_module)()


def _nothing_queued() -> None:
    """The CPU's queue: its work is done when the call returns."""
