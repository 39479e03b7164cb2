"""A model of your own for w2vprof: a small Conformer fine-tuned with CTC (docs/models.md, "Your own model").

    w2vprof summary --model model_family_example:conformer_family --objective ctc

`summary` builds the model and runs `inference` on torch's meta device (shapes only): nothing in them may read a
tensor's value (`.item()`, `.tolist()`, a shape that depends on values). Lengths come on the host, as w2vprof
keeps them.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from w2vprof.models import CTC, LayerSpec, LossOutput, ModelFamily, ModelOptions

SAMPLE_RATE = 16_000
WINDOW, HOP = 400, 320  # 25 ms frames every 20 ms, as wav2vec 2.0's conv stack makes them
CHARS_PER_SECOND = 14.7  # w2vprof's rate for CTC transcripts (docs/models.md)


def feed_forward(dim: int) -> nn.Module:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, dim))


class ConformerBlock(nn.Module):
    """Half feed-forward, self-attention, convolution, half feed-forward, LayerNorm (Gulati et al. 2020)."""

    def __init__(self, dim: int, heads: int = 4, kernel: int = 31) -> None:
        super().__init__()
        self.ff1, self.ff2 = feed_forward(dim), feed_forward(dim)
        self.attention_norm, self.conv_norm, self.final_norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.pointwise_in = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.conv_batch_norm = nn.BatchNorm1d(dim)
        self.pointwise_out = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor, padded: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        y = self.attention_norm(x)
        x = x + self.attention(y, y, y, key_padding_mask=padded, need_weights=False)[0]
        y = nn.functional.glu(self.pointwise_in(self.conv_norm(x).transpose(1, 2)), dim=1)
        y = self.pointwise_out(nn.functional.silu(self.conv_batch_norm(self.depthwise(y))))
        x = x + y.transpose(1, 2)
        return self.final_norm(x + 0.5 * self.ff2(x))


class SmallConformer(nn.Module):
    def __init__(self, vocab: int, dim: int = 144, layers: int = 4) -> None:
        super().__init__()
        self.frontend = nn.Conv1d(1, dim, WINDOW, stride=HOP)
        self.blocks = nn.ModuleList(ConformerBlock(dim) for _ in range(layers))
        self.output = nn.Linear(dim, vocab)

    @staticmethod
    def frames(samples: torch.Tensor) -> torch.Tensor:
        return (torch.div(samples - WINDOW, HOP, rounding_mode="floor") + 1).clamp(min=1)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (T, B, vocab), as torch's ctc_loss takes them."""
        x = self.frontend(waveforms.unsqueeze(1)).transpose(1, 2)  # (B, T, dim)
        frames = self.frames(lengths).to(x.device)
        padded = torch.arange(x.shape[1], device=x.device)[None, :] >= frames[:, None]
        for block in self.blocks:
            x = block(x, padded)
        return self.output(x).float().log_softmax(-1).transpose(0, 1)


class ConformerFamily(ModelFamily):
    name = "small-conformer"
    source = "docs/models.md: a user's example (4 Conformer blocks of 144, CTC)"
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
        log_probs = model(batch.waveforms, batch.lengths)
        frames = SmallConformer.frames(batch.lengths.cpu())
        loss = nn.functional.ctc_loss(log_probs, labels, frames, chars, zero_infinity=True)
        return LossOutput(loss, {"ctc": loss.detach()}, count=batch.size)

    def inference(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return model(batch.waveforms, batch.lengths).sum()  # every module, no loss: Table 1's pass

    def layers(self, model: Any) -> list:
        blocks = [LayerSpec(f"conformer.{i}", "transformer", (f"blocks.{i}",)) for i in range(len(model.blocks))]
        return (
            [LayerSpec("frontend", "cnn", ("frontend",))]
            + blocks
            + [LayerSpec("output", "head", ("output",)), LayerSpec("objective", "loss", ())]
        )


def conformer_family() -> ConformerFamily:
    return ConformerFamily()
