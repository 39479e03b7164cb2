"""One training step of wav2vec 2.0 pretraining: forward (full objective), backward, AdamW step, zero_grad.

This is the code that is timed: no hooks, no counters, no bookkeeping in it.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from w2vprof.models.pretraining import PretrainingOutput, Wav2Vec2ForPretraining
    from w2vprof.workload import Batch

__all__ = ["PRECISIONS", "make_optimizer", "TrainingStep", "autocast_dtype"]

PRECISIONS = ("fp32", "mixed")


def make_optimizer(model: "Wav2Vec2ForPretraining") -> "torch.optim.Optimizer":
    """AdamW with fairseq's pretraining values (decoupled weight decay 0.01, betas (0.9, 0.98), eps 1e-6)."""
    import torch

    c = model.config
    return torch.optim.AdamW(
        model.parameters(), lr=c.lr, betas=c.adam_betas, eps=c.adam_eps, weight_decay=c.weight_decay
    )


def autocast_dtype(device_kind: str) -> "torch.dtype":
    """Mixed precision: float16 (with a gradient scaler) on CUDA and MPS, bfloat16 on CPU."""
    import torch

    return torch.bfloat16 if device_kind == "cpu" else torch.float16


@dataclass
class TrainingStep:
    model: "Wav2Vec2ForPretraining"
    optimizer: "torch.optim.Optimizer"
    device_kind: str  # cpu | cuda | mps
    precision: str = "fp32"
    scaler: Optional[object] = None

    @classmethod
    def create(cls, model, device_kind: str, precision: str) -> "TrainingStep":
        import torch

        scaler = None
        if precision == "mixed" and device_kind in ("cuda", "mps"):
            scaler = torch.amp.GradScaler(device_kind)
        return cls(model, make_optimizer(model), device_kind, precision, scaler)

    def autocast(self):
        import torch

        if self.precision != "mixed":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_kind, dtype=autocast_dtype(self.device_kind))

    def forward(self, batch: "Batch") -> "PretrainingOutput":
        with self.autocast():
            return self.model(batch.waveforms, batch.lengths)

    def backward(self, output: "PretrainingOutput") -> None:
        loss = output.loss if self.scaler is None else self.scaler.scale(output.loss)
        loss.backward()

    def update(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.model.step_schedule()

    def __call__(self, batch: "Batch") -> "PretrainingOutput":
        output = self.forward(batch)
        self.backward(output)
        self.update()
        return output
