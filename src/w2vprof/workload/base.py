"""Batches, the synthetic fixed-length workload (the default) and the choice of workload from CLI options."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Sequence, Union

from w2vprof.errors import BadInput

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
    "make_workload",
    "workload_name",
]

SAMPLE_RATE = 16_000


@dataclass
class Batch:
    waveforms: "torch.Tensor"  # (batch, samples) float32, zero-padded after each utterance's end
    lengths: "torch.Tensor"  # (batch,) int64: valid samples per utterance

    @property
    def size(self) -> int:
        return int(self.waveforms.shape[0])

    def attention_mask(self) -> "torch.Tensor":
        """(batch, samples) bool: True on real audio, False on padding (what the model's mask is built from)."""
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


def collate(waveforms: Sequence[Union["np.ndarray", "torch.Tensor"]]) -> Batch:
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


def workload_name(audio: Optional[Union[str, Path]] = None, length_dist: Optional[str] = None) -> str:
    """The `workload` column a configuration will get, without reading any audio (sweep's resume key)."""
    if audio is not None:
        return f"audio:{Path(audio).resolve().name}"
    if length_dist is not None:
        from w2vprof.workload.lengths import parse_length_dist

        return f"synthetic:{parse_length_dist(length_dist).label}"
    return "synthetic"


def make_workload(
    seconds: float,
    audio: Optional[Path] = None,
    clips_dir: Optional[Path] = None,
    max_seconds: Optional[float] = None,
    length_dist: Optional[str] = None,
) -> Workload:
    """The workload the user asked for: synthetic fixed length unless audio or a length distribution is given.

    Reading a folder probes every file's header (cheap); audio is decoded only when a batch needs it.
    """
    if max_seconds is not None and not float(max_seconds) > 0:
        raise BadInput(f"--max-seconds must be a positive number, got {max_seconds!r}")
    if audio is not None and length_dist is not None:
        raise BadInput("--audio and --length-dist cannot be combined: real audio has its own lengths")
    if clips_dir is not None and audio is None:
        raise BadInput("--clips-dir needs --audio MANIFEST.tsv")
    if audio is not None:
        from w2vprof.workload.audio import AudioWorkload

        return AudioWorkload(audio, clips_dir=clips_dir, max_seconds=max_seconds)
    if length_dist is not None:
        from w2vprof.workload.lengths import LengthDistributionWorkload, parse_length_dist

        return LengthDistributionWorkload(parse_length_dist(length_dist), max_seconds=max_seconds)
    if max_seconds is not None and float(max_seconds) < float(seconds):
        # Cropping every fixed-length utterance would silently profile a different --seconds than recorded.
        raise BadInput(
            f"--max-seconds {float(max_seconds):g} is shorter than --seconds {float(seconds):g}: "
            "for fixed-length batches set --seconds instead"
        )
    return SyntheticWorkload(seconds)
