"""Batches and the synthetic fixed-length workload (the default: every utterance exactly --seconds long)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

from w2vprof.errors import BadInput

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["SAMPLE_RATE", "Batch", "Workload", "SyntheticWorkload", "length_stats", "make_workload"]

SAMPLE_RATE = 16_000


@dataclass
class Batch:
    waveforms: "torch.Tensor"  # (batch, samples) float32, zero-padded after each utterance's end
    lengths: "torch.Tensor"  # (batch,) int64: valid samples per utterance

    @property
    def size(self) -> int:
        return int(self.waveforms.shape[0])


class Workload:
    """An endless stream of batches; subclasses decide where the audio comes from."""

    name: str = "synthetic"

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


def length_stats(batches: list[Batch]) -> dict[str, float]:
    """Length distribution of the utterances in `batches` (seconds) and the padded share of all samples."""
    import torch

    lengths = torch.cat([b.lengths for b in batches]).double() / SAMPLE_RATE
    padded = sum(int(b.waveforms.shape[0] * b.waveforms.shape[1]) for b in batches)
    real = sum(int(b.lengths.sum()) for b in batches)
    return {
        "utt_sec_mean": float(lengths.mean()),
        "utt_sec_median": float(lengths.median()),
        "utt_sec_p90": float(torch.quantile(lengths, 0.9)),
        "utt_sec_max": float(lengths.max()),
        "padding_fraction": (padded - real) / padded if padded else 0.0,
    }


def make_workload(
    seconds: float,
    audio: Optional[Path] = None,
    clips_dir: Optional[Path] = None,
    max_seconds: Optional[float] = None,
    length_dist: Optional[str] = None,
) -> Workload:
    """The workload the user asked for: synthetic fixed length unless audio or a length distribution is given."""
    if audio is not None or length_dist is not None:
        raise BadInput("--audio and --length-dist are not available yet")
    return SyntheticWorkload(seconds)
