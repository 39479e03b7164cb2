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

__all__ = ["FlopCount", "count_flops", "flop_formulas", "cpu_attention_formulas", "subtree_flops"]


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


def _conv_backward(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                   _output_padding, _groups, output_mask, out_shape=None) -> int:
    # Each of grad_input and grad_weight costs what the forward convolution costs.
    # NB: torch's own formula takes the weight gradient's inner size from the full input channels, which
    # overcounts grouped convolutions by the group count (16x for wav2vec 2.0's positional conv).
    from math import prod

    one = 2 * prod(x_shape if transposed else grad_out_shape) * prod(w_shape[1:])
    return one * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def flop_formulas() -> dict:
    """Our additions to torch's flop formulas: CPU attention kernels, and conv backward with groups."""
    import torch

    formulas = cpu_attention_formulas()
    formulas[torch.ops.aten.convolution_backward] = _conv_backward
    return formulas


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

    with FlopCounterMode(display=False, custom_mapping=flop_formulas()) as mode:
        yield _Counter(mode)


_ATTENTION_OPS = ("bmm", "baddbmm", "scaled_dot_product")


def subtree_flops(count: FlopCount, path: str, attention: bool | None = None) -> int:
    """FLOPs of module `path` (incl. submodules); attention=True/False keeps only/excludes attention-product ops.

    NB: in backward, torch's module tracker does not always see a module whose forward returned a tuple, but
    it does see that module's children; then the module's FLOPs are the sum of its outermost children seen.
    """
    keys = [path] if path in count.by_module else _outermost_descendants(count, path)
    total = 0
    for key in keys:
        for op, n in count.by_module[key].items():
            is_attention = any(marker in op for marker in _ATTENTION_OPS)
            if attention is None or attention == is_attention:
                total += n
    return total


def _outermost_descendants(count: FlopCount, path: str) -> list[str]:
    prefix = path + "."
    below = [key for key in count.by_module if key.startswith(prefix)]
    return [key for key in below if not any(key.startswith(other + ".") for other in below if other != key)]


def group_flops_by_op(count: FlopCount) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for op, n in count.by_module.get("Global", {}).items():
        totals[op] += n
    return dict(totals)
