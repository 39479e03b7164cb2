"""One training step of wav2vec 2.0 pretraining: forward (full objective), backward, AdamW step, zero_grad.

This is the code that is timed: no hooks, no counters, no bookkeeping in it.

Mixed precision per device kind (`MIXED_PRECISION`): bfloat16 on CPU (float32's exponent range: no loss scaling),
float16 with a gradient scaler on CUDA and MPS. The scaler starts at fairseq's fp16 initial loss scale, 128
(`LOSS_SCALE_INIT`), not torch's 65536: a scale that overflows skips the optimizer step and halves itself, so a
high start wastes the first steps (and, in a measurement, would leave AdamW's state unallocated).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from w2vprof.models.pretraining import PretrainingOutput, Wav2Vec2ForPretraining
    from w2vprof.workload import Batch

__all__ = [
    "LOSS_SCALE_INIT",
    "MIXED_PRECISION",
    "PRECISIONS",
    "MixedPrecision",
    "TrainingStep",
    "allocate_optimizer_state",
    "autocast_dtype",
    "emulated_precision_note",
    "make_optimizer",
    "optimizer_state_bytes",
    "uses_grad_scaler",
]

PRECISIONS = ("fp32", "mixed")

#: fairseq's --fp16-init-scale default: the gradient scaler's first loss scale.
LOSS_SCALE_INIT = 128.0


@dataclass(frozen=True)
class MixedPrecision:
    """How one device kind trains in mixed precision."""

    dtype_name: str  # the torch dtype autocast computes in
    scaled: bool  # float16 needs loss scaling (a gradient scaler); bfloat16 has float32's range


MIXED_PRECISION = {
    "cpu": MixedPrecision("bfloat16", scaled=False),
    "cuda": MixedPrecision("float16", scaled=True),
    "mps": MixedPrecision("float16", scaled=True),
}


def make_optimizer(model: Wav2Vec2ForPretraining) -> torch.optim.Optimizer:
    """AdamW with fairseq's pretraining values (decoupled weight decay 0.01, betas (0.9, 0.98), eps 1e-6)."""
    import torch

    c = model.config
    return torch.optim.AdamW(
        model.parameters(), lr=c.lr, betas=c.adam_betas, eps=c.adam_eps, weight_decay=c.weight_decay
    )


def autocast_dtype(device_kind: str) -> torch.dtype:
    """Mixed precision: float16 (with a gradient scaler) on CUDA and MPS, bfloat16 on CPU."""
    import torch

    dtype: torch.dtype = getattr(torch, MIXED_PRECISION[device_kind].dtype_name)
    return dtype


def emulated_precision_note(device_kind: str, native_bf16: bool) -> str:
    """The caveat for a mixed-precision run on this device kind, naming the dtype that really ran: bfloat16
    autocast on a CPU without native bfloat16 is emulated (often slower than fp32); float16 or native bfloat16
    needs no note ('')."""
    if device_kind != "cpu" or native_bf16 or MIXED_PRECISION["cpu"].dtype_name != "bfloat16":
        return ""
    return "CPU has no native bfloat16: autocast bfloat16 is emulated (often slower than fp32)"


def uses_grad_scaler(device_kind: str) -> bool:
    """Whether mixed precision on this device kind scales the loss (float16) through a gradient scaler."""
    return MIXED_PRECISION[device_kind].scaled


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor the optimizer keeps per parameter (AdamW: two moments and a step count)."""
    import torch

    from w2vprof.measure.memory import tensor_bytes

    return tensor_bytes(v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v))


def allocate_optimizer_state(optimizer: torch.optim.Optimizer) -> int:
    """Give every trainable parameter AdamW state that has none yet, as AdamW's first real step would (zero
    moments, step 0); returns how many parameters got state.

    Used when every warm-up step was skipped for overflow: the state then exists before the timed steps, so no
    timed step pays for its allocation. A zero state is exactly what AdamW itself starts from, so the numbers of
    the steps that follow are unchanged. Other optimizers are left as they are (0).
    """
    import torch

    if not isinstance(optimizer, torch.optim.AdamW):
        return 0
    allocated = 0
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state[param]
            if not param.requires_grad or state:
                continue
            state["step"] = torch.tensor(0.0)  # as AdamW keeps it (not capturable, not fused): a CPU scalar
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            if group.get("amsgrad"):
                state["max_exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            allocated += 1
    return allocated


@dataclass
class TrainingStep:
    model: Wav2Vec2ForPretraining
    optimizer: torch.optim.Optimizer
    device_kind: str  # cpu | cuda | mps
    precision: str = "fp32"
    scaler: Optional[Any] = None
    accumulate: int = 1  # micro-batches per optimizer step (gradient accumulation; a training recipe)

    @classmethod
    def create(cls, model: Wav2Vec2ForPretraining, device_kind: str, precision: str) -> TrainingStep:
        from w2vprof import compat

        scaler = None
        if precision == "mixed" and uses_grad_scaler(device_kind):
            scaler = compat.grad_scaler(device_kind, init_scale=LOSS_SCALE_INIT)
        return cls(model, make_optimizer(model), device_kind, precision, scaler)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.precision != "mixed":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_kind, dtype=autocast_dtype(self.device_kind))

    def loss_scale(self) -> Optional[float]:
        """The gradient scaler's current loss scale (None without one). Reads it from the device: never call it
        inside a timed step."""
        return float(self.scaler.get_scale()) if self.scaler is not None else None

    def micro_batches(self, batch: Batch) -> list[Batch]:
        """The batch as `accumulate` equal micro-batches, each keeping the batch's padded length ([batch] for 1)."""
        if self.accumulate == 1:
            return [batch]
        pieces = zip(batch.waveforms.chunk(self.accumulate), batch.lengths.chunk(self.accumulate))
        return [type(batch)(waveforms, lengths) for waveforms, lengths in pieces]

    def forward(self, batch: Batch) -> PretrainingOutput:
        with self.autocast():
            output: PretrainingOutput = self.model(batch.waveforms, batch.lengths)
        return output

    def backward(self, output: PretrainingOutput) -> None:
        """Gradients of the loss; with micro-batches, of its share (loss / accumulate), added to the others'."""
        loss = output.loss if self.accumulate == 1 else output.loss / self.accumulate
        loss = loss if self.scaler is None else self.scaler.scale(loss)
        loss.backward()

    def update(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skipped (and the scale halved by update) when a gradient overflowed
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.model.step_schedule()

    def __call__(self, batch: Batch) -> PretrainingOutput:
        for micro_batch in self.micro_batches(batch):
            output = self.forward(micro_batch)
            self.backward(output)
        self.update()
        return output
