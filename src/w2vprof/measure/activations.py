"""Activation memory: the exact bytes of tensors saved for backward, per layer, in forward order.

A saved-tensors hook sees every tensor autograd keeps for the backward pass. Tensors are de-duplicated by their
storage (a view and its base, or one tensor saved by two ops, cost memory once) and the whole storage is
counted (that is what stays alive). Parameters are excluded: they are not activations and are counted as
param_bytes. A storage is attributed to the innermost layer running when it was first saved; storages saved
outside every layer (masking, feature penalty, diversity) go to the `objective` row.

Only what is still saved when the forward pass ends is counted: a tensor saved by a branch whose graph was freed
during the forward (a value computed with gradients and then dropped) is not kept for backward. Storages are told
apart by address, and the allocator reuses a freed address, so each is held by weak references to the tensors
saved from it: an address whose tensors are all gone is a new storage, not a duplicate (without this the count
depended on where the allocator happened to put a later tensor).
"""

from __future__ import annotations

import gc
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Tuple

from w2vprof.models.layers import OBJECTIVE

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from w2vprof.models.layers import LayerSpec

__all__ = ["ActivationTracker"]

#: A storage, once per device: (data pointer, device type, device index).
StorageKey = Tuple[int, str, Optional[int]]


class _SavedStorage:
    """One storage saved for backward: the layer that first saved it, its size, and the tensors saved from it."""

    __slots__ = ("layer", "nbytes", "tensors")

    def __init__(self, layer: str, nbytes: int) -> None:
        self.layer = layer
        self.nbytes = nbytes
        self.tensors: list[weakref.ref[torch.Tensor]] = []

    def alive(self) -> bool:
        return any(ref() is not None for ref in self.tensors)


class ActivationTracker:
    def __init__(self, model: nn.Module, layers: list[LayerSpec]) -> None:
        self._model = model
        self._layers = layers
        self._stack: list[str] = []
        self._saved: dict[StorageKey, _SavedStorage] = {}
        #: layer -> bytes still saved at the end of the forward pass, in the order layers first saved something
        self.bytes_by_layer: OrderedDict[str, int] = OrderedDict()

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_layer.values())

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), tensor.device.type, tensor.device.index)
        # detach: a tensor that still carries its grad_fn, saved as its own op's output, would own that grad_fn
        # through the SavedVariable and be owned by it, a cycle through C++ that not even gc.collect frees (a
        # dropped branch would leak). Autograd puts the grad_fn back on unpack: detaching loses nothing.
        tensor = tensor.detach()
        if key in self._parameter_keys or storage.nbytes() == 0:
            return tensor
        saved = self._saved.get(key)
        if saved is None or not saved.alive():  # a new storage (perhaps at the address of one already freed)
            saved = _SavedStorage(self._stack[-1] if self._stack else OBJECTIVE, storage.nbytes())
            self._saved.pop(key, None)  # re-inserted last: the dict keeps the order storages were saved in
            self._saved[key] = saved
        saved.tensors.append(weakref.ref(tensor))
        return tensor

    def _count_what_is_still_saved(self) -> None:
        gc.collect()  # a dropped branch caught in a Python reference cycle is freed now, not whenever gc runs
        self.bytes_by_layer.clear()
        for saved in self._saved.values():
            if saved.alive():
                self.bytes_by_layer[saved.layer] = self.bytes_by_layer.get(saved.layer, 0) + saved.nbytes
        self._saved.clear()

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
            self._count_what_is_still_saved()  # the forward pass has ended: what it saved and kept is final
        finally:
            for handle in handles:
                handle.remove()
            self._stack.clear()
