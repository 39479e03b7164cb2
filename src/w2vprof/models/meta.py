"""Models on torch's meta device: shapes and parameter counts without weights, memory or arithmetic.

    with on_meta():
        model = build_model("large")   # 317 M parameters, none allocated

Plain `torch.device("meta")` works too, but torch's meta versions of random initialisation and of the weight-norm
reparametrisation go through Python references that import torch._dynamo on first use (over a second); on_meta
makes those few results directly, as shapes. Everything else runs as torch defines it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["on_meta"]


class _MetaShortcuts(TorchFunctionMode):
    """Results that are only shapes on meta tensors, made directly: initialisers (nothing to fill), weight
    norm (elementwise, no FLOPs counted) and one_hot (no FLOPs). A meta tensor copied to the CPU stays the meta
    tensor: initialisers that draw on the CPU and copy the draw back (torchaudio's HuBERT and transformer
    initialisation: `data.copy_(data.cpu().normal_(...).to(data.device))`) then have nothing to copy either."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        first = args[0] if args else kwargs.get("tensor")
        if isinstance(first, torch.Tensor) and first.is_meta:
            if func is torch.Tensor.normal_ or getattr(func, "__module__", None) == "torch.nn.init":
                return first  # in-place initialisers: nothing to fill on meta
            if func is torch.Tensor.cpu:
                return first  # no data to copy: the draw made on it is a shape too
            if func is torch._weight_norm:  # (v, g, dim): the weight, shaped as v
                # NB: not torch.empty_like, whose meta version is a Python reference (2 s of imports on first use)
                return first.new_empty(first.shape)
            if func is torch.norm_except_dim:  # (v, pow, dim): one norm per slice along dim
                dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
                shape = [] if dim == -1 else [n if i == dim else 1 for i, n in enumerate(first.shape)]
                return first.new_empty(shape)
            if func is torch.nn.functional.one_hot:  # torch 2.1 has no meta one_hot even with num_classes given
                classes = args[1] if len(args) > 1 else kwargs.get("num_classes", -1)
                if classes >= 0:
                    return first.new_empty((*first.shape, classes), dtype=torch.long)
        return func(*args, **kwargs)


@contextmanager
def on_meta() -> Iterator[None]:
    """Tensors and modules made inside live on the meta device; see _MetaShortcuts for what is skipped."""
    with torch.device("meta"), _MetaShortcuts():
        yield
