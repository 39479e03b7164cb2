"""The pieces of the wav2vec 2.0 pretraining objective that torchaudio does not provide.

All vectorised: no Python loop over frames or utterances, so the profiled step costs what a real trainer's does.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "GumbelVectorQuantizer",
    "ContrastiveLoss",
    "GradMultiply",
    "compute_span_mask",
    "host_lengths",
    "sample_negative_indices",
]


class GradMultiply(torch.autograd.Function):
    """Identity forward, gradient scaled by `scale` (fairseq's feature_grad_mult): no extra FLOPs."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, None]:
        return grad * ctx.scale, None


class GumbelVectorQuantizer(nn.Module):
    """Product quantizer: `groups` codebooks of `entries` codewords, chosen by a hard Gumbel softmax.

    weight_proj maps a 512-d CNN feature to groups*entries logits; the chosen codewords are concatenated
    (groups * codeword_dim = final_dim). The straight-through estimator sends gradients to the logits.
    """

    def __init__(self, input_dim: int, groups: int, entries: int, output_dim: int) -> None:
        super().__init__()
        if output_dim % groups:
            raise ValueError(f"output_dim {output_dim} is not divisible by {groups} groups")
        self.groups = groups
        self.entries = entries
        self.codeword_dim = output_dim // groups
        self.weight_proj = nn.Linear(input_dim, groups * entries)
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)
        self.codevectors = nn.Parameter(torch.empty(1, groups * entries, self.codeword_dim))
        nn.init.uniform_(self.codevectors)

    def forward(self, features: Tensor, temperature: float) -> tuple[Tensor, Tensor, Tensor]:
        """features (N, input_dim) -> (codewords (N, output_dim), prob_perplexity, code_perplexity)."""
        n = features.shape[0]
        logits = self.weight_proj(features).view(n, self.groups, self.entries).float()
        if self.training:
            one_hot = nn.functional.gumbel_softmax(logits, tau=temperature, hard=True, dim=-1)
        else:
            one_hot = nn.functional.one_hot(logits.argmax(-1), self.entries).to(logits.dtype)
        codebook = self.codevectors.view(self.groups, self.entries, self.codeword_dim)
        # A one-hot matmul instead of a gather: it carries the straight-through gradient to the logits.
        codewords = torch.einsum("ngv,gvd->ngd", one_hot.to(codebook.dtype), codebook).reshape(n, -1)

        # Diversity: perplexity of the batch-averaged soft distribution, per group, summed over groups.
        avg_probs = torch.softmax(logits, dim=-1).mean(dim=0)
        prob_perplexity = torch.exp(-(avg_probs * torch.log(avg_probs + 1e-7)).sum(-1)).sum()
        hard_probs = one_hot.detach().mean(dim=0)
        code_perplexity = torch.exp(-(hard_probs * torch.log(hard_probs + 1e-7)).sum(-1)).sum()
        return codewords, prob_perplexity, code_perplexity


class ContrastiveLoss(nn.Module):
    """Cosine similarity of each masked frame with its target and K distractors, over a temperature; CE on 0."""

    def __init__(self, num_negatives: int, logit_temperature: float) -> None:
        super().__init__()
        self.num_negatives = num_negatives
        self.logit_temperature = logit_temperature

    def forward(self, predictions: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """predictions, targets: (B, M, F), M masked frames per utterance. Returns (mean CE, logits)."""
        batch, masked, _ = targets.shape
        negative_index = sample_negative_indices(batch, masked, self.num_negatives, targets.device)
        batch_index = torch.arange(batch, device=targets.device)[:, None, None]
        negatives = targets[batch_index, negative_index]  # (B, M, K, F)
        candidates = torch.cat([targets.unsqueeze(2), negatives], dim=2).float()  # (B, M, K+1, F)
        # cosine as a dot product of unit vectors: one batched matmul (counted by FLOP counters).
        unit_predictions = nn.functional.normalize(predictions.float(), dim=-1, eps=1e-8)
        unit_candidates = nn.functional.normalize(candidates, dim=-1, eps=1e-8)
        logits = torch.einsum("bmf,bmkf->bmk", unit_predictions, unit_candidates) / self.logit_temperature
        # A distractor that quantized to exactly the target's codewords is not a negative (fairseq: -inf).
        same_as_target = (negatives == targets.unsqueeze(2)).all(-1)
        logits = torch.cat([logits[..., :1], logits[..., 1:].masked_fill(same_as_target, float("-inf"))], dim=-1)
        flat = logits.reshape(-1, self.num_negatives + 1)
        loss = nn.functional.cross_entropy(flat, torch.zeros(flat.shape[0], dtype=torch.long, device=flat.device))
        return loss, logits


def sample_negative_indices(batch: int, masked: int, num_negatives: int, device: torch.device) -> Tensor:
    """For each of `masked` frames, K indices drawn uniformly among the *other* masked frames of its utterance.

    Draw from [0, M-1) and shift indices >= the frame's own position by one, so the positive is never drawn.
    """
    if masked < 2:
        raise ValueError("contrastive loss needs at least 2 masked frames per utterance (utterance too short)")
    draws = torch.randint(0, masked - 1, (batch, masked, num_negatives), device=device)
    own = torch.arange(masked, device=device)[None, :, None]
    return draws + (draws >= own).long()


def host_lengths(lengths: Union[Tensor, np.ndarray, Sequence[int]]) -> np.ndarray:
    """Per-utterance lengths as a host int64 array.

    NB: lengths that live on a GPU are read back here, which makes the host wait for the device; callers that
    know them on the host (the workload does) pass them so: a CPU tensor, a numpy array or a list.
    """
    if isinstance(lengths, Tensor):
        return lengths.detach().cpu().numpy().astype(np.int64)
    return np.asarray(lengths, dtype=np.int64)


def compute_span_mask(
    frame_lengths: Union[Tensor, np.ndarray, Sequence[int]],
    num_frames: int,
    mask_prob: float,
    span: int,
    min_spans: int,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """fairseq-style span masking: (B, T) bool on the CPU, only real frames, the same masked count in every row.

    Each row starts max(min_spans, floor(p * L / span + u)) spans uniformly in [0, L - span] (overlap allowed,
    so about 1 - exp(-p) = 48 % of frames at p = 0.65); then every row keeps a random subset of its masked
    frames of the size of the smallest row's, so the masked frames form a (B, M) block.

    Computed on the host, as fairseq does: the draws come from the CPU generator (`generator` or the default)
    and the shapes that depend on them (spans per row, masked frames per row) are known without waiting for a
    device. The float64 arithmetic is numpy's: MPS has no float64, and no device tensor ever holds it.
    """
    lengths = np.minimum(host_lengths(frame_lengths), num_frames)
    batch = len(lengths)
    uniform = torch.rand(batch, generator=generator).numpy().astype(np.float64)
    spans_per_row = np.floor(mask_prob * lengths.astype(np.float64) / span + uniform).astype(np.int64)
    spans_per_row = np.maximum(spans_per_row, min_spans)
    max_spans = int(spans_per_row.max())
    last_start = np.maximum(lengths - span, 0)  # inclusive
    draws = torch.rand(batch, max_spans, generator=generator).numpy().astype(np.float64)
    starts = torch.from_numpy(np.floor(draws * (last_start + 1)[:, None].astype(np.float64)).astype(np.int64))
    positions = starts[:, :, None] + torch.arange(span)  # (B, S, span)
    in_use = torch.from_numpy(np.arange(max_spans)[None, :] < spans_per_row[:, None])[:, :, None]
    inside = positions < torch.from_numpy(lengths)[:, None, None]
    # Invalid positions go to a spare column that is cut off afterwards.
    positions = torch.where(in_use & inside, positions, torch.full_like(positions, num_frames))
    mask = torch.zeros(batch, num_frames + 1, dtype=torch.bool)
    mask.scatter_(1, positions.reshape(batch, -1), True)
    mask = mask[:, :num_frames]

    per_row = int(mask.numpy().sum(axis=1).min())
    scores = torch.rand(batch, num_frames, generator=generator).masked_fill(~mask, -1.0)
    keep = scores.topk(per_row, dim=1).indices
    same_count = torch.zeros_like(mask)
    same_count.scatter_(1, keep, True)
    return same_count
