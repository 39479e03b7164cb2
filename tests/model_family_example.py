"""A model of your own for w2vprof: a small Conformer fine-tuned with CTC (docs/models.md, "Your own model").

w2vprof summary --model model_family_example:conformer_family --objective ctc
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from w2vprof.models import CTC, LayerSpec, LossOutput, ModelFamily, ModelOptions

SAMPLE_RATE = 16_000
WINDOW, HOP = 400, 320  # 25 ms frames every 20 ms, as wav2vec 2.0's conv stack makes them
CHARS_PER_SECOND = 14.7  # w2vprof's rate for CTC transcripts (docs/models.md)


class SmallConformer(nn.Module):
    def __init__(self, vocab: int, dim: int = 144, layers: int = 4) -> None:
        super().__init__()
        from torchaudio.models import Conformer

        self.frontend = nn.Conv1d(1, dim, WINDOW, stride=HOP)
        self.conformer = Conformer(
            input_dim=dim, num_heads=4, ffn_dim=4 * dim, num_layers=layers, depthwise_conv_kernel_size=31
        )
        self.output = nn.Linear(dim, vocab)

    @staticmethod
    def frames(samples: torch.Tensor) -> torch.Tensor:
        return (torch.div(samples - WINDOW, HOP, rounding_mode="floor") + 1).clamp(min=1)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor, chars: torch.Tensor):
        x = self.frontend(waveforms.unsqueeze(1)).transpose(1, 2)  # (B, T, dim)
        frames = self.frames(lengths.cpu())  # w2vprof's batches keep their lengths on the host
        x, _ = self.conformer(x, frames.to(x.device))
        log_probs = self.output(x).float().log_softmax(-1).transpose(0, 1)  # (T, B, vocab)
        return nn.functional.ctc_loss(log_probs, labels, frames, chars, zero_infinity=True)


class ConformerFamily(ModelFamily):
    name = "small-conformer"
    source = "docs/models.md: a user's example (torchaudio.models.Conformer, 4 layers of 144)"
    objectives = (CTC,)

    def build(self, objective: str = CTC, options: Optional[ModelOptions] = None) -> nn.Module:
        self.check_objective(objective)
        return SmallConformer(vocab=(options or ModelOptions()).vocab)

    def make_targets(self, batch: Any, model: Any, generator: Optional[torch.Generator] = None) -> Any:
        """Random transcripts: CHARS_PER_SECOND characters per second, at most one per two frames."""
        lengths = batch.lengths.cpu()
        chars = (lengths / SAMPLE_RATE * CHARS_PER_SECOND).round().long()
        chars = torch.minimum(chars, model.frames(lengths) // 2).clamp(min=1)
        labels = torch.randint(1, model.output.out_features, (len(chars), int(chars.max())), generator=generator)
        return labels.to(batch.waveforms.device), chars

    def loss(self, model: nn.Module, batch: Any, targets: Any) -> LossOutput:
        labels, chars = targets
        loss = model(batch.waveforms, batch.lengths, labels, chars)
        return LossOutput(loss, {"ctc": loss.detach()}, count=batch.size)

    def layers(self, model: Any) -> list:
        blocks = len(model.conformer.conformer_layers)
        return (
            [LayerSpec("frontend", "cnn", ("frontend",))]
            + [LayerSpec(f"conformer.{i}", "transformer", (f"conformer.conformer_layers.{i}",)) for i in range(blocks)]
            + [LayerSpec("output", "head", ("output",)), LayerSpec("objective", "loss", ())]
        )


def conformer_family() -> ConformerFamily:
    return ConformerFamily()
