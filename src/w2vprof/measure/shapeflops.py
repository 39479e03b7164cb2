"""FLOPs of a forward pass from shapes alone: the model built and run on torch's meta device (no data, no math).

Table 1 needs only shapes, and a real pass of wav2vec 2.0 large takes seconds and 2 GB. FLOP formulas depend
only on shapes, so a pass on meta tensors gives the real pass's numbers (tests compare the two). The counting
rules are count_flops's: torch's formulas plus ours, each op charged to "Global" and to every module running,
under the same module paths. torch's FlopCounterMode itself is not used here: its dispatch handler imports
torch._dynamo on first use, which alone costs more than this whole count.
"""
from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from w2vprof.measure.flops import FlopCount, formula_registry

__all__ = ["on_meta", "count_forward_flops"]

GLOBAL = "Global"  # the key FlopCounterMode charges every op to


class _MetaShortcuts(TorchFunctionMode):
    """Results that are only shapes on meta tensors, made directly.

    torch's meta versions of these go through Python references that import torch._dynamo (seconds): random
    initialisation (nothing to draw on meta) and the weight-norm reparametrisation of the positional conv
    (elementwise work, no FLOPs counted). Everything else runs as torch defines it.
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        first = args[0] if args else kwargs.get("tensor")
        if isinstance(first, torch.Tensor) and first.is_meta:
            if func is torch.Tensor.normal_ or getattr(func, "__module__", None) == "torch.nn.init":
                return first  # in-place initialisers: nothing to fill on meta
            if func is torch._weight_norm:  # (v, g, dim): the weight, shaped as v
                return torch.empty_like(first)
            if func is torch.norm_except_dim:  # (v, pow, dim): one norm per slice along dim
                dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
                shape = [] if dim == -1 else [n if i == dim else 1 for i, n in enumerate(first.shape)]
                return first.new_empty(shape)
        return func(*args, **kwargs)


@contextmanager
def on_meta() -> Iterator[None]:
    """Tensors and modules made inside live on the meta device; see _MetaShortcuts for what is skipped."""
    with torch.device("meta"), _MetaShortcuts():
        yield


class _ForwardFlopCounter(TorchDispatchMode):
    """FlopCounterMode's forward accounting: decompose what can be, count what has a formula, per module."""

    def __init__(self, formulas: dict) -> None:
        super().__init__()
        self.formulas = formulas
        self.running = {GLOBAL}
        self.counts: dict[str, dict[Any, int]] = defaultdict(lambda: defaultdict(int))

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch (2.5+) wraps every mode's __torch_dispatch__ so Dynamo skips it, importing torch._dynamo on the
        # first op; nothing here is compiled, so opt out (the hook torch documents for this).
        return False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is not torch.ops.prim.device.default:
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        formula = self.formulas.get(func._overloadpacket)
        if formula is not None:
            flops = formula(*args, **kwargs, out_val=out)
            for name in set(self.running):
                self.counts[name][func._overloadpacket] += flops
        return out


def count_forward_flops(model: nn.Module, forward: Callable[[], Any]) -> FlopCount:
    """FLOPs of `forward()` (a forward pass of `model`), by module path as count_flops reports them."""
    counter = _ForwardFlopCounter(formula_registry())
    root = type(model).__name__
    handles = []
    for path, module in model.named_modules():
        name = f"{root}.{path}" if path else root
        handles.append(module.register_forward_pre_hook(lambda _m, _a, n=name: counter.running.add(n)))
        handles.append(module.register_forward_hook(lambda _m, _a, _o, n=name: counter.running.discard(n)))
    try:
        with counter:
            forward()
    finally:
        for handle in handles:
            handle.remove()
    return FlopCount({path: {str(op): int(n) for op, n in ops.items()} for path, ops in counter.counts.items()})
