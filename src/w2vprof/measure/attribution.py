"""Exact per-layer attribution of backward FLOPs through the autograd graph.

torch's module tracker attributes backward ops on a best-effort basis: an op can be charged to two modules at
once, so per-layer rows stop adding up. Instead, during the measurement forward we label every autograd node
with the layer that created it (a layer's post-hook labels the new nodes reachable from its outputs; a
pre-hook first labels what its inputs came from as outside-layer work). During backward, each op is charged
to the layer of the autograd node executing it (`torch._C._current_autograd_node`), using torch's FLOP
formulas plus ours. The rows then add up to the counter's total by construction.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from w2vprof.models.layers import OBJECTIVE

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from w2vprof.models.layers import LayerSpec

__all__ = ["NodeLabeler", "backward_flops_by_layer"]


def _tensors(value: Any) -> Iterator[Any]:
    import torch

    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            yield from _tensors(getattr(value, name))


class NodeLabeler:
    def __init__(self, model: nn.Module, layers: list[LayerSpec]) -> None:
        self._model = model
        self._layers = layers
        self.labels: dict[Any, str] = {}  # autograd node -> layer name (holding the node keeps it alive)

    def label_from(self, value: Any, layer: str) -> None:
        stack = [t.grad_fn for t in _tensors(value) if t.grad_fn is not None]
        while stack:
            node = stack.pop()
            if node is None or node in self.labels:
                continue
            self.labels[node] = layer
            stack.extend(next_node for next_node, _ in node.next_functions)

    @contextmanager
    def track(self) -> Iterator[NodeLabeler]:
        handles = []
        for layer in self._layers:
            for path in layer.modules:
                module = self._model.get_submodule(path)
                handles.append(module.register_forward_pre_hook(self._before_hook()))
                handles.append(module.register_forward_hook(self._after_hook(layer.name)))
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _before_hook(self) -> Callable[[nn.Module, Any], None]:
        def before(module: nn.Module, args: Any) -> None:
            self.label_from(args, OBJECTIVE)

        return before

    def _after_hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        def after(module: nn.Module, args: Any, output: Any) -> None:  # returns None: a value would replace the output
            self.label_from(output, name)

        return after


@contextmanager
def backward_flops_by_layer(
    labels: dict[Any, str], recompute: Optional[dict[str, int]] = None
) -> Iterator[dict[str, int]]:
    """Count FLOPs of the backward run inside, per layer of the executing autograd node.

    `recompute`: where the forward work that activation checkpointing runs again goes, per checkpointed layer
    (w2vprof.measure.recipes); without it, that work counts as its layer's backward.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from w2vprof.measure.flops import formula_registry
    from w2vprof.measure.recipes import recomputing_layer

    registry = formula_registry()
    counts: dict[str, int] = defaultdict(int)

    class _BackwardCounter(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch's class is untyped
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = registry.get(func._overloadpacket) or registry.get(func)
            if formula is not None:
                flops = int(formula(*args, **kwargs, out_val=out))
                recomputed = recomputing_layer()
                if recompute is not None and recomputed is not None:
                    recompute[recomputed] = recompute.get(recomputed, 0) + flops
                else:
                    counts[labels.get(torch._C._current_autograd_node(), OBJECTIVE)] += flops
            return out

    with _BackwardCounter():  # type: ignore[no-untyped-call]  # torch's __init__ is untyped
        yield counts
