"""FLOP counting on a torch whose own counter cannot do what w2vprof needs: torch 2.0 to 2.3.

torch.utils.flop_counter.FlopCounterMode attributes FLOPs to every module it sees only from torch 2.4 (through
torch.utils.module_tracker.ModuleTracker). Before that it attributes them only to modules passed as `mods=`, with
hook rules of its own, and before 2.3 it has neither `flop_registry` nor `shape_wrapper` to extend. NVIDIA's torch
for JetPack 5 (the Xavier boards) is 2.0 or 2.1, so on such a torch `counter_mode()` returns FallbackFlopCounter:
the same counting as torch 2.4+'s FlopCounterMode, written on APIs torch 2.0 has -
- the same formulas for matmuls and convolutions (`base_formulas()`: 2 FLOPs per multiply-add, as torch's), and the
  caller's formulas on top (w2vprof.measure.flops.flop_formulas: attention and convolution backward);
- the same attribution rules as ModuleTracker: a module is entered by a global forward pre-hook and left by its
  forward hook; in backward it is entered when the gradients of all its outputs are ready and left when those of
  all its inputs are (torch.autograd.graph.register_multi_grad_hook, torch 2.0+), and everything is reset when the
  backward ends. Module paths are ModuleTracker's: the root's class name, then attribute names.
On torch 2.4+ the native counter is used: tests/test_old_torch.py checks that both give the same counts.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from functools import wraps
from math import prod
from typing import Any, Callable, Dict, List, Sequence

__all__ = [
    "FallbackFlopCounter",
    "base_formulas",
    "ModuleTracker",
    "counter_mode",
    "formula_registry",
    "native_counter_works",
    "shape_wrapper",
]

GLOBAL = "Global"

#: op (an OpOverloadPacket) -> formula; typing.Dict: evaluated at import (Python 3.8).
FormulaTable = Dict[Any, Callable[..., int]]
Shape = Sequence[int]


def native_counter_works() -> bool:
    """Whether this torch's FlopCounterMode attributes FLOPs to every module and takes shape formulas (2.4+)."""
    try:
        from torch.utils import flop_counter
        from torch.utils.module_tracker import ModuleTracker  # noqa: F401 - torch 2.4+: what the counter uses
    except ImportError:
        return False
    return hasattr(flop_counter, "flop_registry") and hasattr(flop_counter, "shape_wrapper")


# -- formulas: the same arithmetic as torch 2.4+'s torch.utils.flop_counter, on shapes -----------------------------
def mm_flops(a_shape: Shape, b_shape: Shape, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """(m, k) x (k, n): 2*m*k*n."""
    m, k = a_shape
    return 2 * m * k * int(b_shape[1])


def addmm_flops(self_shape: Shape, a_shape: Shape, b_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return mm_flops(a_shape, b_shape)


def bmm_flops(a_shape: Shape, b_shape: Shape, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """(b, m, k) x (b, k, n): 2*b*m*k*n."""
    b, m, k = a_shape
    return 2 * b * m * k * int(b_shape[2])


def baddbmm_flops(self_shape: Shape, a_shape: Shape, b_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return bmm_flops(a_shape, b_shape)


def conv_flops(
    x_shape: Shape,
    w_shape: Shape,
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    *args: Any,
    out_shape: Shape = (),
    **kwargs: Any,
) -> int:
    """2 * batch * output positions (input positions when transposed) * filter size * c_out * c_in per group."""
    c_out, c_in, *filter_size = w_shape
    positions = (x_shape if transposed else out_shape)[2:]
    return 2 * int(x_shape[0]) * prod(positions) * prod(filter_size) * c_out * c_in


#: aten op name -> shape formula, for ops that exist in this torch (see base_formulas).
_BASE_FORMULA_NAMES: Dict[str, Callable[..., int]] = {
    "mm": mm_flops,
    "addmm": addmm_flops,
    "bmm": bmm_flops,
    "baddbmm": baddbmm_flops,
    "convolution": conv_flops,
    "_convolution": conv_flops,
    "cudnn_convolution": conv_flops,
    "convolution_overrideable": conv_flops,
    "_slow_conv2d_forward": conv_flops,
}


def base_formulas() -> FormulaTable:
    """op packet -> shape formula: torch 2.4+'s matmul and convolution formulas, for the ops this torch has."""
    import torch

    aten = torch.ops.aten
    return {getattr(aten, name): f for name, f in _BASE_FORMULA_NAMES.items() if hasattr(aten, name)}


def shape_wrapper(formula: Callable[..., int]) -> Callable[..., int]:
    """formula(*shapes, out_shape=...) -> formula(*tensors, out_val=...), as torch.utils.flop_counter's (2.3+)."""
    import torch
    from torch.utils._pytree import tree_map

    def shape(value: Any) -> Any:
        return value.shape if isinstance(value, torch.Tensor) else value

    @wraps(formula)
    def on_tensors(*args: Any, out_val: Any = None, **kwargs: Any) -> int:
        args, kwargs, out_shape = tree_map(shape, (args, kwargs, out_val))
        return formula(*args, out_shape=out_shape, **kwargs)

    return on_tensors


def formula_registry(custom: FormulaTable) -> FormulaTable:
    """op packet -> formula(*tensors, out_val=out, **kwargs), as FlopCounterMode builds its table: torch's
    formulas (torch 2.4+; ours for matmuls and convolutions before), `custom` on top. Formulas marked `_get_raw`
    take tensors; the others take shapes."""
    wrap: Callable[[Callable[..., int]], Callable[..., int]]
    if native_counter_works():
        from torch.utils import flop_counter

        torchs: FormulaTable = dict(flop_counter.flop_registry)  # registered already wrapped
        wrap = flop_counter.shape_wrapper
    else:
        torchs, wrap, custom = {}, shape_wrapper, {**base_formulas(), **custom}
    return {**torchs, **{op: f if getattr(f, "_get_raw", False) else wrap(f) for op, f in custom.items()}}


# -- attribution: torch 2.4+'s ModuleTracker rules ------------------------------------------------------------------
class ModuleTracker:
    """The modules running now (forward, or their backward), as module paths in `parents` (always with 'Global')."""

    def __init__(self) -> None:
        self.parents = {GLOBAL}
        self._known: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()
        self._callback_queued = False
        self._handles: List[Any] = []

    def name_of(self, module: Any) -> str:
        """The root's class name, then attribute names ('Wav2Vec2ForPretraining.encoder.transformer...')."""
        if module not in self._known:
            self._known[module] = type(module).__name__
        name = self._known[module]
        if module not in self._seen:
            for child_name, child in module.named_children():
                self._known[child] = f"{name}.{child_name}"
                self.name_of(child)
            self._seen.add(module)
        return name

    def _enter(self, name: str, backward: bool) -> Callable[..., None]:
        def enter(*_: Any) -> None:
            if backward:
                self._reset_when_backward_ends()
            self.parents.add(name)

        return enter

    def _leave(self, name: str) -> Callable[..., None]:
        def leave(*_: Any) -> None:
            self.parents.discard(name)

        return leave

    def _reset_when_backward_ends(self) -> None:
        import torch

        if self._callback_queued:  # one backward at a time, as torch's tracker assumes
            return

        def reset() -> None:
            self.parents = {GLOBAL}
            self._callback_queued = False

        torch.autograd.Variable._execution_engine.queue_callback(reset)
        self._callback_queued = True

    def _on_gradients(self, value: Any, action: Callable[..., None]) -> None:
        """Run `action` once the gradients of every tensor in `value` that needs one are computed."""
        import torch
        from torch.autograd.graph import register_multi_grad_hook
        from torch.utils._pytree import tree_flatten

        tensors = [t for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor) and t.requires_grad]
        if tensors:
            # Grad mode on, as torch 2.4+ does it: before that, register_multi_grad_hook fails on a parameter under
            # no_grad (it finds a leaf's grad accumulator through a view, which no_grad leaves without one).
            with torch.enable_grad():
                self._handles.append(register_multi_grad_hook(tensors, action))

    def _before_forward(self, module: Any, inputs: Any) -> None:
        name = self.name_of(module)
        self._enter(name, backward=False)()
        self._on_gradients(inputs, self._leave(name))

    def _after_forward(self, module: Any, inputs: Any, output: Any) -> None:
        name = self.name_of(module)
        self._leave(name)()
        self._on_gradients(output, self._enter(name, backward=True))

    def __enter__(self) -> ModuleTracker:
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

        self._handles.append(register_module_forward_pre_hook(self._before_forward))
        self._handles.append(register_module_forward_hook(self._after_forward))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class FallbackFlopCounter:
    """FlopCounterMode's counting (torch 2.4+) on torch 2.0+: `get_flop_counts()` gives {module path: {op: FLOPs}}
    with 'Global' for the whole run; every counted op is charged to each module in ModuleTracker's `parents`."""

    def __init__(self, registry: FormulaTable) -> None:
        self.registry = registry
        self.flop_counts: Dict[str, Dict[Any, int]] = defaultdict(lambda: defaultdict(int))
        self.tracker = ModuleTracker()
        self._mode: Any = None

    def get_total_flops(self) -> int:
        return sum(self.flop_counts[GLOBAL].values())

    def get_flop_counts(self) -> Dict[str, Dict[Any, int]]:
        return {path: dict(ops) for path, ops in self.flop_counts.items()}

    def count(self, packet: Any, out: Any, args: Sequence[Any], kwargs: Dict[str, Any]) -> None:
        formula = self.registry.get(packet)
        if formula is not None:
            flops = int(formula(*args, **kwargs, out_val=out))
            for path in set(self.tracker.parents):
                self.flop_counts[path][packet] += flops

    def __enter__(self) -> FallbackFlopCounter:
        self.flop_counts.clear()
        self.tracker.__enter__()
        self._mode = _dispatch_mode(self)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        handled = self._mode.__exit__(*exc)
        self._mode = None
        self.tracker.__exit__(*exc)
        return handled


def _dispatch_mode(counter: FallbackFlopCounter) -> Any:
    """A TorchDispatchMode that runs each op and hands it to `counter`; an op without a formula is first
    decomposed where torch can (as FlopCounterMode does), so its matmuls are counted."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Counting(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch's class is untyped
        def __torch_dispatch__(
            self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Dict[str, Any] | None = None
        ) -> Any:
            kwargs = kwargs or {}
            decompose = getattr(func, "decompose", None)
            if (
                func._overloadpacket not in counter.registry
                and decompose is not None
                and func is not torch.ops.prim.device.default
            ):
                with self:
                    decomposed = decompose(*args, **kwargs)
                if decomposed is not NotImplemented:
                    return decomposed
            out = func(*args, **kwargs)
            counter.count(func._overloadpacket, out, args, kwargs)
            return out

    return _Counting()  # type: ignore[no-untyped-call]  # torch's __init__ is untyped


def counter_mode(custom_formulas: FormulaTable) -> Any:
    """A FLOP counter context (torch's FlopCounterMode on torch 2.4+, FallbackFlopCounter before) with `custom_formulas`
    on top of the matmul and convolution formulas; read it with `get_flop_counts()`."""
    if native_counter_works():
        from torch.utils.flop_counter import FlopCounterMode

        return FlopCounterMode(display=False, custom_mapping=custom_formulas)
    return FallbackFlopCounter(formula_registry(custom_formulas))
