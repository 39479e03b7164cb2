"""FLOP counting on a real pass with torch.utils.flop_counter (2 FLOPs per multiply-add).

torch counts matmuls and convolutions; we add or replace two kinds of formula (`flop_formulas`):
- Attention, one convention on every device: forward 4*b*h*Sq*Sk*d (QK^T and AV), backward twice that, 8*b*h*Sq*Sk*d
  (four matmuls of the forward's sizes: grad of the scores, of V, of Q, of K). torch has no formula for the CPU
  kernel (attention would count as zero there), and its CUDA formulas count the backward as 10*b*h*Sq*Sk*d: they
  add the score recomputation of memory-efficient kernels, an implementation detail like activation
  checkpointing. The same configuration must report the same `bwd_flops` on a CPU and a GPU, so every fused
  attention op (CPU, CUDA flash / memory-efficient / cuDNN, MPS, other backends) gets ours. docs/measurement.md.
- Convolution backward, counted per group (torch's formula overcounts grouped convolutions).
Elementwise ops (norms, activations, softmax, the optimizer update) are not counted, as in torch, fvcore and the
paper.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Sequence

__all__ = ["FlopCount", "count_flops", "flop_formulas", "formula_registry", "subtree_flops"]

#: aten op (or op packet) -> its FLOP formula.
FormulaTable = Dict[Any, Callable[..., int]]

#: Fused attention kernels whose first three arguments are query, key, value shaped (b, h, s, d).
SDPA_FORWARD_OPS = (
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
    "_scaled_dot_product_attention_math_for_mps",
)
#: Their backward ops, whose first four arguments are grad_out, query, key, value shaped (b, h, s, d).
SDPA_BACKWARD_OPS = (
    "_scaled_dot_product_flash_attention_for_cpu_backward",
    "_scaled_dot_product_flash_attention_backward",
    "_scaled_dot_product_efficient_attention_backward",
    "_scaled_dot_product_cudnn_attention_backward",
    "_scaled_dot_product_fused_attention_overrideable_backward",
)
#: The kernels under those, also reachable directly (e.g. with packed variable-length sequences), in their own
#: layout: (b, s, h, d) for dense batches. op -> (positions of query, key, value, cum_seq_q, cum_seq_k, max_q and
#: max_k among the op's arguments, FLOPs as a multiple of the forward).
KERNEL_ATTENTION_OPS = {
    # (query, key, value, cum_seq_q, cum_seq_k, max_q, max_k, ...)
    "_flash_attention_forward": ((0, 1, 2, 3, 4, 5, 6), 1),
    # (grad_out, query, key, value, out, logsumexp, cum_seq_q, cum_seq_k, max_q, max_k, ...)
    "_flash_attention_backward": ((1, 2, 3, 6, 7, 8, 9), 2),
    # (query, key, value, bias, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, ...)
    "_efficient_attention_forward": ((0, 1, 2, 4, 5, 6, 7), 1),
    # (grad_out, query, key, value, bias, out, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, ...)
    "_efficient_attention_backward": ((1, 2, 3, 6, 7, 8, 9), 2),
}


def sdpa_forward_flops(
    query_shape: Sequence[int],
    key_shape: Sequence[int],
    value_shape: Sequence[int],
    *args: Any,
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """QK^T (b, h, Sq, d) x (b, h, d, Sk) and AV (b, h, Sq, Sk) x (b, h, Sk, dv): 2 FLOPs per multiply-add."""
    b, h, s_q, d = (int(n) for n in query_shape)
    s_k, d_v = int(key_shape[-2]), int(value_shape[-1])
    return 2 * b * h * s_q * s_k * d + 2 * b * h * s_q * s_k * d_v


def sdpa_backward_flops(
    grad_out_shape: Sequence[int],
    query_shape: Sequence[int],
    key_shape: Sequence[int],
    value_shape: Sequence[int],
    *args: Any,
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """grad of the scores, of V, of Q and of K: four matmuls, the sizes of the forward's two. No recomputation."""
    return 2 * sdpa_forward_flops(query_shape, key_shape, value_shape)


def _sequence_lengths(offsets: Any, longest: int) -> list[int]:
    """Each packed sequence's length from its offsets; the longest for all where only shapes exist (meta)."""
    if offsets.device.type == "meta":
        return [int(longest)] * (offsets.shape[0] - 1)
    return [int(n) for n in offsets.diff().tolist()]


def _kernel_formula(positions: tuple[int, ...], multiple: int) -> Callable[..., int]:
    """A raw (tensor-argument) formula for a kernel-level attention op, by our convention.

    Dense batches come as (b, s, h, d): read as (b, h, s, d). Packed sequences ((..., total, h, d) with
    cumulative offsets) count each sequence on its own, as torch 2.3+'s formulas for these kernels do.
    """

    def formula(*args: Any, out_val: Any = None, **kwargs: Any) -> int:
        query, key, value, cum_q, cum_k, max_q, max_k = (args[i] for i in positions)
        if cum_q is None:
            b_s_h_d = [tuple(t.shape) for t in (query, key, value)]
            return multiple * sdpa_forward_flops(*((b, h, s, d) for b, s, h, d in b_s_h_d))
        heads, d, d_v = query.shape[-2], query.shape[-1], value.shape[-1]
        pairs = zip(_sequence_lengths(cum_q, max_q), _sequence_lengths(cum_k, max_k))
        return multiple * sum(
            sdpa_forward_flops((1, heads, s_q, d), (1, heads, s_k, d), (1, heads, s_k, d_v)) for s_q, s_k in pairs
        )

    formula._get_raw = True  # type: ignore[attr-defined]  # FlopCounterMode: pass tensors, not shapes
    return formula


def _conv_backward(
    grad_out_shape: Sequence[int],
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    _groups: Any,
    output_mask: Sequence[bool],
    out_shape: Any = None,
) -> int:
    # Each of grad_input and grad_weight costs what the forward convolution costs.
    # NB: torch's own formula takes the weight gradient's inner size from the full input channels, which
    # overcounts grouped convolutions by the group count (16x for wav2vec 2.0's positional conv).
    from math import prod

    one = 2 * prod(x_shape if transposed else grad_out_shape) * prod(w_shape[1:])
    return one * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def flop_formulas() -> FormulaTable:
    """Our additions to torch's flop formulas (FlopCounterMode's custom_mapping): attention and conv backward.

    Ops this torch does not have are skipped. Formulas marked `_get_raw` take tensors; the others take shapes.
    """
    import torch

    aten = torch.ops.aten
    formulas: FormulaTable = {aten.convolution_backward: _conv_backward}
    for names, formula in ((SDPA_FORWARD_OPS, sdpa_forward_flops), (SDPA_BACKWARD_OPS, sdpa_backward_flops)):
        for name in names:
            if hasattr(aten, name):
                formulas[getattr(aten, name)] = formula
    for name, (positions, multiple) in KERNEL_ATTENTION_OPS.items():
        if hasattr(aten, name):
            formulas[getattr(aten, name)] = _kernel_formula(positions, multiple)
    return formulas


def formula_registry() -> FormulaTable:
    """op packet -> formula called as formula(*args, out_val=out, **kwargs): torch's, with ours on top.

    The table FlopCounterMode builds from `flop_formulas()`, for code that counts with its own dispatch mode
    (before torch 2.4, w2vprof.measure.flop_fallback's matmul and convolution formulas stand in for torch's).
    """
    from w2vprof.measure import flop_fallback

    return flop_fallback.formula_registry(flop_formulas())


@dataclass
class FlopCount:
    """FLOPs per module path (inclusive of submodules) and per op, as counted during a pass."""

    by_module: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_module.get("Global", {}).values())

    def module_total(self, path: str) -> int:
        return sum(self.by_module.get(path, {}).values())

    def plus(self, *others: FlopCount) -> FlopCount:
        """This count and `others` added up, per module and op (e.g. the forwards of several micro-batches)."""
        result = {path: dict(ops) for path, ops in self.by_module.items()}
        for other in others:
            for path, ops in other.by_module.items():
                into = result.setdefault(path, {})
                for op, n in ops.items():
                    into[op] = into.get(op, 0) + n
        return FlopCount(result)

    def minus(self, other: FlopCount) -> FlopCount:
        result: dict[str, dict[str, int]] = {}
        for path, ops in self.by_module.items():
            before = other.by_module.get(path, {})
            diff = {op: n - before.get(op, 0) for op, n in ops.items() if n - before.get(op, 0)}
            if diff:
                result[path] = diff
        return FlopCount(result)


class _Counter:
    def __init__(self, mode: Any) -> None:
        self._mode = mode

    def snapshot(self) -> FlopCount:
        counts = self._mode.get_flop_counts()
        return FlopCount({path: {str(op): int(n) for op, n in ops.items()} for path, ops in counts.items()})


@contextmanager
def count_flops() -> Iterator[_Counter]:
    """Count FLOPs of everything run inside; `.snapshot()` any time (e.g. after forward, then after backward).

    torch's FlopCounterMode on torch 2.4+; before, w2vprof.measure.flop_fallback's counter (the same counts).
    """
    from w2vprof.measure import flop_fallback

    with flop_fallback.counter_mode(flop_formulas()) as mode:
        yield _Counter(mode)


@contextmanager
def dynamo_left_unimported() -> Iterator[None]:
    """Inside, torch does not import torch._dynamo (over a second, with sympy) for counting that never compiles.

    torch 2.5+ wraps its FLOP counter's dispatch and the Python references behind many meta kernels (layer norm,
    comparisons, linear's add...) in torch._disable_dynamo, which imports torch._dynamo the first time each runs,
    only to get `torch._dynamo.disable(fn)` so that torch.compile does not trace into them. Counting on meta
    compiles nothing, so inside, that import finds a stand-in whose `disable` returns the function itself; on the
    way out the stand-in and every function it saw are put back as they were, so a later torch.compile imports
    the real torch._dynamo and wraps them for real. Anything else asked of the stand-in raises ImportError or
    AttributeError, and `summary` counts again without it (see count_on_meta).
    """
    import sys
    import types

    import torch

    if "torch._dynamo" in sys.modules:
        yield
        return
    seen: list[Any] = []

    def disable(fn: Any, recursive: bool = True, wrapping: bool = True) -> Any:
        seen.append(fn)
        return fn

    stand_in = types.ModuleType("torch._dynamo", "w2vprof's stand-in while counting on meta")
    stand_in.disable = disable  # type: ignore[attr-defined]
    sys.modules["torch._dynamo"] = stand_in
    try:
        yield
    finally:
        if sys.modules.get("torch._dynamo") is stand_in:
            del sys.modules["torch._dynamo"]
        if vars(torch).get("_dynamo") is stand_in:  # NB: getattr would import the real one (torch.__getattr__)
            delattr(torch, "_dynamo")
        for fn in seen:
            if getattr(fn, DYNAMO_DISABLED, None) is fn:
                delattr(fn, DYNAMO_DISABLED)


#: Where torch._disable_dynamo's wrapper caches the function it calls (torch/_compile.py).
DYNAMO_DISABLED = "__dynamo_disable"


#: Ops whose FLOPs are attention products: the math path's batched matmuls and every fused kernel.
_ATTENTION_OPS = ("bmm", "baddbmm", "attention")


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
