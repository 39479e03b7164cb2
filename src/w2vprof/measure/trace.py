"""One training step as a Chrome/Perfetto trace, with the layers of layers.csv as named ranges.

torch.profiler records every operator (and, on CUDA, every kernel); around them `trace_step` adds ranges named
exactly as the rows of layers.csv (`cnn.0`, ..., `transformer.11`, `quantizer`, `objective`), placed by the same
layer boundaries as the per-layer timing (w2vprof.measure.layer_timing): in the forward, a range for each layer's
modules and an `objective` range for the work between them; in the backward, a range for each run of autograd
nodes created by one layer. Three enclosing ranges, `forward`, `backward` and `optimizer step`, say which
direction a layer range belongs to. On CUDA the backward's layer ranges sit on the autograd engine's device
thread, beside the main thread's `backward` range. Open the file at https://ui.perfetto.dev or chrome://tracing.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from w2vprof.devices.sync import synchronizer
from w2vprof.files import write_bytes_atomic
from w2vprof.measure.layer_timing import STEP, LayerBoundaries

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from w2vprof.measure.step import StepInput, TrainingStep
    from w2vprof.models.family import LossOutput
    from w2vprof.models.layers import LayerSpec
    from w2vprof.workload import Batch

__all__ = ["PHASES", "TraceHooks", "trace_step"]

#: The enclosing ranges of a traced step, in order.
PHASES = ("forward", "backward", "optimizer step")


class LayerRanges:
    """A BoundaryObserver opening a profiler range named after the layer that starts and closing it at the stop.
    The `other` work (direction STEP) gets no range of its own: the phase ranges already name it."""

    def __init__(self) -> None:
        from torch.autograd.profiler import record_function

        self._range = record_function
        self._open: Optional[Any] = None

    def stop(self) -> None:
        if self._open is not None:
            self._open.__exit__(None, None, None)
            self._open = None

    def start(self, layer: str, direction: str) -> None:
        if direction != STEP:
            # record_function's __enter__ carries no annotations in torch; the range is held as Any.
            opened: Any = self._range(layer)
            opened.__enter__()
            self._open = opened


class TraceHooks(LayerBoundaries):
    """The layer boundaries (opening a LayerRanges range per layer) inside the three phase ranges, and the device
    synchronised at the end of the step, inside the profile."""

    def __init__(self, model: nn.Module, layers: list[LayerSpec], sync: Callable[[], None]) -> None:
        from torch.autograd.profiler import record_function

        super().__init__(model, layers, LayerRanges())
        self._range = record_function
        self._sync = sync

    @contextmanager
    def step(self, batch: Batch) -> Iterator[None]:
        with super().step(batch):
            yield
            self._sync()

    @contextmanager
    def forward(self, batch: Batch) -> Iterator[None]:
        with self._range(PHASES[0]), super().forward(batch):
            yield

    @contextmanager
    def backward(self, forward: LossOutput) -> Iterator[None]:
        with self._range(PHASES[1]), super().backward(forward):
            yield

    @contextmanager
    def update(self) -> Iterator[None]:
        with self._range(PHASES[2]):
            yield


def trace_step(step: TrainingStep, batch: StepInput, layers: list[LayerSpec], path: Path) -> Path:
    """Run one training step (forward, backward, update: it trains the model like any step) under
    torch.profiler, with TraceHooks, and write its Chrome trace to `path` atomically; returns the path.

    Run a warmup step first: a first step's trace shows one-time costs (allocations, kernel selection).
    A folder or disk that cannot be written is w2vprof.files.DiskWriteError naming `path`.
    """
    from torch.profiler import ProfilerActivity, profile

    from w2vprof.measure.step import batch_of

    device = batch_of(batch).waveforms.device.type
    sync = synchronizer(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    hooks = TraceHooks(step.model, layers, sync)
    sync()
    with profile(activities=activities) as profiler:
        step.run(batch, hooks)
    return _export(profiler, Path(path))


def _export(profiler: Any, path: Path) -> Path:
    """The profiler writes its trace itself; it goes to a temporary file first so `path` is written atomically
    (a reader never sees half a trace, a failed write keeps the previous file). A name ending in .gz is written
    compressed, as the profiler does."""
    with tempfile.TemporaryDirectory(prefix="w2vprof-trace-") as folder:
        temporary = Path(folder) / path.name
        profiler.export_chrome_trace(str(temporary))
        write_bytes_atomic(path, temporary.read_bytes())
    return path
