"""Seconds per layer of a training step, forward and backward, and where the rest of the step goes.

`time_layers` runs extra training steps (after the headline timed steps, which stay bare: these are other
steps, and every hook is removed when they end) with the device synchronised at each layer boundary, and
charges the time between two boundaries to whatever ran in between:

- forward: a pre-hook and a post-hook on every module of every layer (the model family's map of layers) mark
  where a layer starts and ends. Time inside a layer's modules is that layer's; time outside every layer's modules
  during the forward (masking, the residual add around the positional convolution, the losses' glue, the
  feature penalty) is `objective`'s, the row that already holds the FLOPs and activations of that work.
- backward: every autograd node the forward created is labelled with the layer whose forward created it
  (w2vprof.measure.attribution.NodeLabeler, as for backward FLOPs). A pre-hook on every node marks a boundary
  when the node about to run belongs to another layer than the one before it. So each node's time lands on the
  layer that created it, whatever order the engine runs nodes in: branches need no special case (the quantizer
  and project_q hang off feature_projection beside the transformer, the contrastive loss joins final_proj and
  project_q, and the engine may interleave them; each node is charged to its own layer). Gradient accumulation
  into a parameter is charged to the parameter's layer; for a parameter held by the model itself
  (mask_embedding) to that parameter's row. Nodes made after the labelling (the gradient scaler's multiply, a
  checkpointed layer's recomputation) are charged to what ran before them (`other`, the checkpointed layer).
- `other`: the rest of the step: the optimizer update, zero_grad, the loss scaling, the autograd engine's start
  and end. In each repeat other = step - sum(fwd + bwd), so each repeat's rows add up to its step.

Each layer row is the median of its own per-repeat values (so a disturbance in one repeat of one layer does not
move that layer's row), and the `other` row is the median instrumented step minus those layer rows: the rows add
up to `median_step_sec`, a step as measured (`step_sec`, the rows' sum, equals it). A disturbance in one repeat
can therefore show in `other` as the difference between the median step and the sum of the layer medians; the
raw per-repeat `other` is kept in `samples`. Where the layer medians alone add up to more than the median step
(repeats that disagree a lot), `other` is the median of the per-repeat `other` instead, never negative, and
`step_sec` exceeds `median_step_sec` by the difference. Compare the rows' sum with the headline timed steps' median.
Bookkeeping (labelling nodes, adding and removing hooks) runs between a boundary's stop and the next start and
is charged to nothing; `wall_sec` is the instrumented steps' median including it. The garbage collector is off
during an instrumented step, as it never runs in a bare one: the labels' Python objects would otherwise set off
collections (on base about 20 ms a step, mostly one full pass over 330,000 objects, mostly during bookkeeping).
The hooks themselves cost about 1,100 Python calls a step on base (93 boundaries, 1,017 autograd nodes), a few
milliseconds of a step of seconds.
Each boundary costs a device synchronisation (nothing on the CPU; a few microseconds and a drained queue on a
GPU), so on a GPU the sum can exceed a bare step's time by roughly the launch latency hidden between layers.
Assumes the backward runs on one thread at a time (true on the CPU and for a model wholly on one accelerator).
"""

from __future__ import annotations

import gc
import statistics
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional, Protocol, Sequence

from w2vprof.devices.sync import synchronizer
from w2vprof.measure.attribution import NodeLabeler
from w2vprof.measure.step import StepHooks
from w2vprof.models.layers import OBJECTIVE

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from w2vprof.measure.step import StepInput, TrainingStep
    from w2vprof.models.family import LossOutput
    from w2vprof.models.layers import LayerSpec
    from w2vprof.workload import Batch

__all__ = [
    "BACKWARD",
    "FORWARD",
    "OTHER",
    "STEP",
    "BoundaryObserver",
    "LayerBoundaries",
    "LayerTime",
    "LayerTiming",
    "time_layers",
    "with_flop_rates",
]

FORWARD = "fwd"
BACKWARD = "bwd"
STEP = "step"  # direction of the `other` work: neither a layer's forward nor its backward
OTHER = "other"  # the row for the rest of the step (optimizer update, loss scaling, engine start and end)


class BoundaryObserver(Protocol):
    """What LayerBoundaries tells at each boundary: `stop` (what ran until now has ended), then, after any
    bookkeeping, `start` (work of `layer` in `direction` begins)."""

    def stop(self) -> None: ...

    def start(self, layer: str, direction: str) -> None: ...


class LayerBoundaries(StepHooks):
    """Finds the boundaries between layers in a training step and tells an observer (a stopwatch, a tracer): the
    step's hooks (w2vprof.measure.step.StepHooks), so `step.run(batch, boundaries)` is the step it watches.

    Each phase's hooks are removed when the phase ends, and nothing is stored on the model.
    """

    def __init__(self, model: nn.Module, layers: list[LayerSpec], observer: BoundaryObserver) -> None:
        self._model = model
        self._layers = layers
        self._observer = observer
        self._labeler = NodeLabeler(model, layers)
        self._lock = threading.Lock()
        self._running: tuple[str, str] = (OTHER, STEP)
        self._inside: list[str] = []  # layers whose forward is running (innermost last)
        #: layer -> bytes of the tensors entering and leaving its modules' forwards (for arithmetic intensity)
        self.io_bytes: dict[str, int] = defaultdict(int)

    def switch(self, layer: str, direction: str, bookkeeping: Optional[Callable[[], None]] = None) -> None:
        with self._lock:
            self._observer.stop()
            if bookkeeping is not None:
                bookkeeping()
            self._running = (layer, direction)
            self._observer.start(layer, direction)

    def stop(self) -> None:
        """The step has ended: the last interval is charged and nothing runs any more."""
        with self._lock:
            self._observer.stop()

    @contextmanager
    def step(self, batch: Batch) -> Iterator[None]:
        """The whole step: `other` work until the first forward, and the last interval charged at its end."""
        self.switch(OTHER, STEP)
        try:
            yield
        finally:
            self.stop()

    @contextmanager
    def forward(self, batch: Batch) -> Iterator[None]:
        self._labeler = NodeLabeler(self._model, self._layers)  # a fresh graph: forget the last step's nodes
        handles = []
        for layer in self._layers:
            for path in layer.modules:
                module = self._model.get_submodule(path)
                handles.append(module.register_forward_pre_hook(self._enter_hook(layer.name)))
                handles.append(module.register_forward_hook(self._leave_hook(layer.name)))
        self.switch(OBJECTIVE, FORWARD)
        try:
            yield
        finally:
            self.switch(OTHER, STEP, lambda: _remove(handles))
            self._inside.clear()

    @contextmanager
    def backward(self, forward: LossOutput) -> Iterator[None]:
        """Around the backward of `forward.loss`, made under `forward()`."""
        handles: list[Any] = []
        self.switch(OTHER, STEP, lambda: handles.extend(self._hook_nodes(forward.loss)))
        try:
            yield
        finally:
            self.switch(OTHER, STEP, lambda: self._forget_graph(handles))

    # -- forward hooks -------------------------------------------------------------------------------------------
    def _enter_hook(self, name: str) -> Callable[..., None]:
        def enter(module: Any, args: Any) -> None:
            def bookkeeping() -> None:
                self._labeler.label_from(args, OBJECTIVE)  # what fed this layer was made outside it
                self.io_bytes[name] += _nbytes(args)
                self._inside.append(name)

            self.switch(name, FORWARD, bookkeeping)

        return enter

    def _leave_hook(self, name: str) -> Callable[..., None]:
        def leave(module: Any, args: Any, output: Any) -> None:  # returns None: a value would replace the output
            def bookkeeping() -> None:
                self._labeler.label_from(output, name)
                self.io_bytes[name] += _nbytes(output)
                self._inside.pop()

            # the interval until here is charged to this layer; next runs the enclosing layer, or outside work
            self.switch(self._inside[-2] if len(self._inside) > 1 else OBJECTIVE, FORWARD, bookkeeping)

        return leave

    # -- backward hooks ------------------------------------------------------------------------------------------
    def _hook_nodes(self, loss: Any) -> list[Any]:
        self._labeler.label_from(loss, OBJECTIVE)
        self._label_own_parameters()
        return [node.register_prehook(self._node_hook(label)) for node, label in self._labeler.labels.items()]

    def _label_own_parameters(self) -> None:
        """A parameter held by the model itself (mask_embedding) was labelled as outside-layer work by its first
        user; its gradient accumulation belongs to its own row."""
        import torch

        with torch.enable_grad():
            for layer in self._layers:
                for name in layer.parameters:
                    parameter = self._model.get_parameter(name)
                    view = parameter.view_as(parameter)
                    if view.grad_fn is not None:
                        # the view's input is the parameter's AccumulateGrad node, the one in this step's graph
                        accumulate = view.grad_fn.next_functions[0][0]
                        if accumulate in self._labeler.labels:
                            self._labeler.labels[accumulate] = layer.name

    def _node_hook(self, label: str) -> Callable[[Any], None]:
        def before_node(grad_outputs: Any) -> None:  # returns None: a value would replace the gradients
            if self._running != (label, BACKWARD):
                self.switch(label, BACKWARD)

        return before_node

    def _forget_graph(self, handles: list[Any]) -> None:
        _remove(handles)
        self._labeler = NodeLabeler(self._model, self._layers)  # the labels hold nodes: let them go


def _remove(handles: list[Any]) -> None:
    for handle in handles:
        handle.remove()
    handles.clear()


def _nbytes(value: Any) -> int:
    import torch

    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(item) for item in value)
    return 0


class Stopwatch:
    """A BoundaryObserver charging the time between a start and the next stop to that (layer, direction)."""

    def __init__(self, clock: Callable[[], float], sync: Callable[[], None]) -> None:
        self._clock = clock
        self._sync = sync
        self._running: Optional[tuple[str, str]] = None
        self._since = 0.0
        self.charged: dict[tuple[str, str], float] = defaultdict(float)

    def stop(self) -> None:
        self._sync()
        now = self._clock()
        if self._running is not None:
            self.charged[self._running] += now - self._since
        self._running = None

    def start(self, layer: str, direction: str) -> None:
        self._running = (layer, direction)
        self._since = self._clock()


# -- results -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerTime:
    """One row: a layer's median seconds forward and backward, or (layer == "other") the rest of the step."""

    layer: str
    fwd_sec: Optional[float]  # None on the `other` row
    bwd_sec: Optional[float]
    sec: float  # fwd_sec + bwd_sec; the `other` row's whole time
    time_share: float  # sec / LayerTiming.step_sec (the shares add up to 1)
    io_bytes: int = 0  # tensors entering and leaving the layer's forward (weights not included)
    fwd_flops_per_sec: Optional[float] = None  # from with_flop_rates
    bwd_flops_per_sec: Optional[float] = None


@dataclass(frozen=True)
class LayerTiming:
    rows: list[LayerTime]  # every layer in forward order, then `other`
    median_step_sec: float  # median over the repeats of the instrumented step, bookkeeping excluded
    wall_sec: float  # median over the repeats of the instrumented step, bookkeeping included
    repeats: int
    #: raw seconds per repeat, for run.json: "layer/fwd", "layer/bwd", "other", "step", "wall" -> one per repeat
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def step_sec(self) -> float:
        """The step as the rows tell it: their sum. It is the median instrumented step (`other` is what the layer
        rows leave of it) unless the layer rows alone add up to more (see _other_seconds)."""
        return sum(row.sec for row in self.rows)

    def row(self, layer: str) -> LayerTime:
        for row in self.rows:
            if row.layer == layer:
                return row
        raise KeyError(layer)


def time_layers(
    step: TrainingStep,
    layers: list[LayerSpec],
    batches: Sequence[StepInput],
    device: str,
    repeats: int = 3,
    *,
    clock: Callable[[], float] = time.perf_counter,
    sync: Optional[Callable[[], None]] = None,
    before_each: Optional[Callable[[StepInput], None]] = None,
) -> LayerTiming:
    """Run `repeats` training steps on `step` (batch i is batches[i % len(batches)]), timing each layer's
    forward and backward; medians over the repeats. The steps train the model like any other step.

    `before_each(batch)` runs before each instrumented step, off its clock: a caller comparing with bare steps
    times one there, so bare and instrumented steps alternate and a change of load between them hits both."""
    if repeats < 1 or not batches:
        raise ValueError(f"time_layers needs at least one repeat and one batch (got {repeats}, {len(batches)})")
    sync = sync if sync is not None else synchronizer(device)
    runs = []
    for index in range(repeats):
        batch = batches[index % len(batches)]
        if before_each is not None:
            before_each(batch)
        stopwatch = Stopwatch(clock, sync)
        boundaries = LayerBoundaries(step.model, layers, stopwatch)
        with _no_garbage_collection():
            start = clock()
            step.run(batch, boundaries)
            wall = clock() - start
        runs.append((stopwatch.charged, wall, dict(boundaries.io_bytes)))
    return _summarise([layer.name for layer in layers], runs)


@contextmanager
def _no_garbage_collection() -> Iterator[None]:
    """The garbage collector off inside, and back on after if it was on: a bare step leaves nothing for it, an
    instrumented one makes thousands of Python objects (node labels, hooks) that would set off collections."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _summarise(names: list[str], runs: list[tuple[dict[tuple[str, str], float], float, dict[str, int]]]) -> LayerTiming:
    keys = [(name, direction) for name in names for direction in (FORWARD, BACKWARD)]
    samples = {
        f"{name}/{direction}": [charged.get((name, direction), 0.0) for charged, _, _ in runs]
        for name, direction in keys
    }
    samples["step"] = [sum(charged.values()) for charged, _, _ in runs]
    samples[OTHER] = [sum(charged.values()) - sum(charged.get(key, 0.0) for key in keys) for charged, _, _ in runs]
    samples["wall"] = [wall for _, wall, _ in runs]
    seconds = {key: statistics.median(samples[f"{key[0]}/{key[1]}"]) for key in keys}
    median_step = statistics.median(samples["step"])
    layer_rows = sum(seconds.values())
    other = _other_seconds(median_step, layer_rows, samples[OTHER])
    step = layer_rows + other
    rows = []
    for name in names:
        fwd, bwd = seconds[(name, FORWARD)], seconds[(name, BACKWARD)]
        io = int(statistics.median([io_bytes.get(name, 0) for _, _, io_bytes in runs]))
        rows.append(LayerTime(name, fwd, bwd, fwd + bwd, _share(fwd + bwd, step), io))
    rows.append(LayerTime(OTHER, None, None, other, _share(other, step)))
    return LayerTiming(rows, median_step, statistics.median(samples["wall"]), len(runs), samples)


def _other_seconds(median_step: float, layer_rows: float, other_samples: list[float]) -> float:
    """The `other` row: the median step minus the layer rows, so the rows add up to a step as measured.

    Each layer row is the median of its own repeats, so when the repeats disagree (a loaded machine) the layer rows
    can add up to more than the median step, and that difference would be negative: a row no reader of layers.csv
    accepts, and time nothing took. `other` is then what the repeats themselves left outside every layer (their
    median, never below 0), and the rows add up to a little more than the median step (run.json shows both).
    """
    if layer_rows <= median_step:
        return median_step - layer_rows
    return max(0.0, statistics.median(other_samples))


def _share(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 0.0


def with_flop_rates(timing: LayerTiming, fwd_flops: Mapping[str, int], bwd_flops: Mapping[str, int]) -> LayerTiming:
    """The same timing with achieved FLOP/s per layer and direction: FLOPs (the engine's per-layer counts, e.g.
    {row.layer: row.fwd_flops for row in layer_rows}) over seconds; None where either is missing or zero."""
    rows = [
        replace(
            row,
            fwd_flops_per_sec=_rate(fwd_flops.get(row.layer), row.fwd_sec),
            bwd_flops_per_sec=_rate(bwd_flops.get(row.layer), row.bwd_sec),
        )
        for row in timing.rows
    ]
    return replace(timing, rows=rows)


def _rate(flops: Optional[int], seconds: Optional[float]) -> Optional[float]:
    return flops / seconds if flops and seconds else None
