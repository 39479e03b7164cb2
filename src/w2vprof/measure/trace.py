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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from w2vprof.files import write_bytes_atomic
from w2vprof.measure.layer_timing import STEP, LayerBoundaries, device_sync

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.measure.layers import LayerSpec
    from w2vprof.measure.step import TrainingStep
    from w2vprof.workload import Batch

__all__ = ["trace_step", "PHASES"]

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


def trace_step(step: TrainingStep, batch: Batch, layers: list[LayerSpec], path: Path) -> Path:
    """Run one training step (forward, backward, update: it trains the model like any step) under
    torch.profiler and write its Chrome trace to `path` atomically; returns the path.

    Run a warmup step first: a first step's trace shows one-time costs (allocations, kernel selection).
    A folder or disk that cannot be written is w2vprof.files.DiskWriteError naming `path`.
    """
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile

    device = batch.waveforms.device.type
    sync = device_sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    ranges = LayerRanges()
    boundaries = LayerBoundaries(step.model, layers, ranges)
    sync()
    with profile(activities=activities) as profiler:
        try:
            for micro_batch in step.micro_batches(batch):  # one, unless the recipe accumulates gradients
                with record_function(PHASES[0]), boundaries.forward():
                    output = step.forward(micro_batch)
                with record_function(PHASES[1]), boundaries.backward(output):
                    step.backward(output)
            with record_function(PHASES[2]):
                step.update()
            sync()
        finally:
            boundaries.stop()
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
