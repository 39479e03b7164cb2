"""FLOP counting on a real pass with torch.utils.flop_counter (2 FLOPs per multiply-add).

torch counts matmuls, convolutions and the CUDA scaled-dot-product-attention kernels. NB: on CPU, torch's
registry has no formula for `_scaled_dot_product_flash_attention_for_cpu` (used in eval mode and whenever
attention dropout is 0), so attention would count as zero; we add the same formula torch uses for the CUDA
kernels (forward 4*b*h*Sq*Sk*d, backward 8*b*h*Sq*Sk*d). Elementwise ops (norms, activations, softmax,
the optimizer update) are not counted, as in torch, fvcore and the paper.
"""
from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

__all__ = ["FlopCount", "count_flops", "cpu_attention_formulas", "subtree_flops"]


def _cpu_sdpa_forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # (b, h, s_q, d) x (b, h, s_k, d)^T and (b, h, s_q, s_k) x (b, h, s_k, d_v): two matmuls.
    b, h, s_q, d = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * b * h * s_q * s_k * d + 2 * b * h * s_q * s_k * d_v


def _cpu_sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # grad_v, grad_attn, grad_q, grad_k: four matmuls of the same size as the forward's two.
    b, h, s_q, d = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * (2 * b * h * s_q * s_k * d + 2 * b * h * s_q * s_k * d_v)


def cpu_attention_formulas() -> dict:
    """Formulas for the CPU attention kernels that this torch's flop counter does not know."""
    import torch
    from torch.utils.flop_counter import flop_registry

    aten = torch.ops.aten
    formulas = {}
    for name, formula in (
        ("_scaled_dot_product_flash_attention_for_cpu", _cpu_sdpa_forward),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", _cpu_sdpa_backward),
    ):
        op = getattr(aten, name, None)
        if op is not None and op not in flop_registry and op.default not in flop_registry:
            formulas[op] = formula
    return formulas


@dataclass
class FlopCount:
    """FLOPs per module path (inclusive of submodules) and per op, as counted during a pass."""

    by_module: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_module.get("Global", {}).values())

    def module_total(self, path: str) -> int:
        return sum(self.by_module.get(path, {}).values())

    def minus(self, other: "FlopCount") -> "FlopCount":
        result: dict[str, dict[str, int]] = {}
        for path, ops in self.by_module.items():
            before = other.by_module.get(path, {})
            diff = {op: n - before.get(op, 0) for op, n in ops.items() if n - before.get(op, 0)}
            if diff:
                result[path] = diff
        return FlopCount(result)


class _Counter:
    def __init__(self, mode) -> None:
        self._mode = mode

    def snapshot(self) -> FlopCount:
        counts = self._mode.get_flop_counts()
        return FlopCount({path: {str(op): int(n) for op, n in ops.items()} for path, ops in counts.items()})


@contextmanager
def count_flops() -> Iterator[_Counter]:
    """Count FLOPs of everything run inside; `.snapshot()` any time (e.g. after forward, then after backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=cpu_attention_formulas()) as mode:
        yield _Counter(mode)


_ATTENTION_OPS = ("bmm", "baddbmm", "scaled_dot_product")


def subtree_flops(count: FlopCount, path: str, attention: bool | None = None) -> int:
    """FLOPs of module `path` (incl. submodules); attention=True/False keeps only/excludes attention-product ops."""
    total = 0
    for op, n in count.by_module.get(path, {}).items():
        is_attention = any(marker in op for marker in _ATTENTION_OPS)
        if attention is None or attention == is_attention:
            total += n
    return total


def group_flops_by_op(count: FlopCount) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for op, n in count.by_module.get("Global", {}).items():
        totals[op] += n
    return dict(totals)
