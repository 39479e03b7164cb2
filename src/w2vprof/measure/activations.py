"""Activation memory: the exact bytes of tensors saved for backward, per layer, in forward order.

A saved-tensors hook sees every tensor autograd keeps for the backward pass. Tensors are de-duplicated by their
storage (a view and its base, or one tensor saved by two ops, cost memory once) and the whole storage is
counted (that is what stays alive). Parameters are excluded: they are not activations and are counted as
param_bytes. A storage is attributed to the innermost layer running when it was first saved; storages saved
outside every layer (masking, feature penalty, diversity) go to the `objective` row.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Tuple

from w2vprof.measure.layers import OBJECTIVE

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from w2vprof.measure.layers import LayerSpec

__all__ = ["ActivationTracker"]

#: A storage, once per device: (data pointer, device type, device index).
StorageKey = Tuple[int, str, Optional[int]]


class ActivationTracker:
    def __init__(self, model: nn.Module, layers: list[LayerSpec]) -> None:
        self._model = model
        self._layers = layers
        self._stack: list[str] = []
        self._seen: set[StorageKey] = set()
        #: layer -> bytes, in the order layers first saved something
        self.bytes_by_layer: OrderedDict[str, int] = OrderedDict()

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_layer.values())

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), tensor.device.type, tensor.device.index)
        if key not in self._seen and key not in self._parameter_keys and storage.nbytes() > 0:
            self._seen.add(key)
            layer = self._stack[-1] if self._stack else OBJECTIVE
            self.bytes_by_layer[layer] = self.bytes_by_layer.get(layer, 0) + storage.nbytes()
        return tensor

    @staticmethod
    def _unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def _enter_hook(self, name: str) -> Callable[[nn.Module, Any], None]:
        def enter(module: nn.Module, args: Any) -> None:
            self._stack.append(name)

        return enter

    def _leave_hook(
        self, module: nn.Module, args: Any, output: Any
    ) -> None:  # returns None: a value would replace the output
        self._stack.pop()

    @contextmanager
    def track(self) -> Iterator[ActivationTracker]:
        import torch

        self._parameter_keys = {
            (p.untyped_storage().data_ptr(), p.device.type, p.device.index) for p in self._model.parameters()
        }
        handles = []
        for layer in self._layers:
            for path in layer.modules:
                module = self._model.get_submodule(path)
                handles.append(module.register_forward_pre_hook(self._enter_hook(layer.name)))
                handles.append(module.register_forward_hook(self._leave_hook))
        try:
            with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
                yield self
        finally:
            for handle in handles:
                handle.remove()
            self._stack.clear()
