"""Batches, the Workload interface and the synthetic fixed-length workload (the default).

Every kind of workload builds on this module; the choice among them lives in w2vprof.workload.factory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence, Union

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

__all__ = [
    "SAMPLE_RATE",
    "Batch",
    "Workload",
    "SyntheticWorkload",
    "collate",
    "length_stats",
]

SAMPLE_RATE = 16_000


@dataclass
class Batch:
    waveforms: torch.Tensor  # (batch, samples) float32, zero-padded after each utterance's end
    lengths: torch.Tensor  # (batch,) int64: valid samples per utterance

    @property
    def size(self) -> int:
        return int(self.waveforms.shape[0])

    def attention_mask(self) -> torch.Tensor:
        """(batch, samples) bool: True on real audio, False on the zero padding after each utterance's end."""
        import torch

        positions = torch.arange(self.waveforms.shape[1], device=self.lengths.device)
        return positions.unsqueeze(0) < self.lengths.unsqueeze(1)


class Workload:
    """An endless stream of batches; subclasses decide where the audio comes from.

    `warnings` holds at most a few lines for the user (skipped files); libraries never print them.
    """

    name: str = "synthetic"

    @property
    def warnings(self) -> list[str]:
        return []

    def batches(self, batch_size: int, seed: int) -> Iterator[Batch]:  # pragma: no cover - interface
        raise NotImplementedError


class SyntheticWorkload(Workload):
    """Fixed-length random-noise utterances: the cost of a step depends on shapes, not on the sound."""

    name = "synthetic"

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)

    def batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        import torch

        samples = int(round(self.seconds * SAMPLE_RATE))
        generator = torch.Generator().manual_seed(seed)
        # Different content each step (like a real trainer), same shape: a few distinct batches cycled.
        pool = [
            Batch(
                waveforms=0.1 * torch.randn(batch_size, samples, generator=generator),
                lengths=torch.full((batch_size,), samples, dtype=torch.long),
            )
            for _ in range(4)
        ]
        index = 0
        while True:
            yield pool[index % len(pool)]
            index += 1


def collate(waveforms: Sequence[Union[np.ndarray, torch.Tensor]]) -> Batch:
    """Stack 1-D utterances into a Batch, zero-padded to the longest (as a trainer's collater does)."""
    import torch

    tensors = [torch.as_tensor(w, dtype=torch.float32).reshape(-1) for w in waveforms]
    if not tensors:
        raise ValueError("collate needs at least one utterance")
    lengths = torch.tensor([t.numel() for t in tensors], dtype=torch.long)
    padded = torch.zeros(len(tensors), int(lengths.max()), dtype=torch.float32)
    for row, tensor in enumerate(tensors):
        padded[row, : tensor.numel()] = tensor
    return Batch(waveforms=padded, lengths=lengths)


def length_stats(batches: list[Batch]) -> dict[str, float]:
    """Length distribution of the utterances in `batches` (seconds) and the padded share of all samples.

    Computed on the host from the integer sample counts (Python ints, no tensor arithmetic): exact, and free of
    float64 device tensors, which MPS does not have. Lengths on a device are read back once, before any timing.
    """
    samples = sorted(length for b in batches for length in b.lengths.tolist())
    padded = sum(int(b.waveforms.shape[0] * b.waveforms.shape[1]) for b in batches)
    real = sum(samples)
    # Linear interpolation between order statistics at rank 0.9 * (n - 1), as torch.quantile and numpy.
    rank = 0.9 * (len(samples) - 1)
    low, high = samples[int(rank)], samples[min(int(rank) + 1, len(samples) - 1)]
    return {
        "utt_sec_mean": real / (len(samples) * SAMPLE_RATE),
        # NB: the lower middle value of an even count (as torch's median), not the average of the two.
        "utt_sec_median": samples[(len(samples) - 1) // 2] / SAMPLE_RATE,
        "utt_sec_p90": (low + (high - low) * (rank - int(rank))) / SAMPLE_RATE,
        "utt_sec_max": samples[-1] / SAMPLE_RATE,
        "padding_fraction": (padded - real) / padded if padded else 0.0,
    }
