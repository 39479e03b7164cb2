"""Synthetic utterances whose lengths follow a distribution, to mimic a corpus one does not have.

`--length-dist` grammar (seconds):
  normal:MEAN,STD[,MIN,MAX]     truncated normal
  lognormal:MEAN,STD[,MIN,MAX]  truncated log-normal with that mean and standard deviation (right-skewed,
                                closer to real read speech than a normal)
  uniform:MIN,MAX
Default bounds: MIN = min(1 s, MEAN / 2), MAX = 3 x MEAN. Truncation redraws out-of-range values rather than
clipping them, so the bounds do not collect spikes of identical lengths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Optional

from w2vprof.errors import SettingError
from w2vprof.workload.base import SAMPLE_RATE, Batch, Workload

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["LengthDistribution", "parse_length_dist", "LengthDistributionWorkload"]

KINDS = ("normal", "lognormal", "uniform")


def _fmt(value: float) -> str:
    return repr(float(value))  # 5.5 -> '5.5', 2 -> '2.0': stable text for the workload column


@dataclass(frozen=True)
class LengthDistribution:
    kind: str  # normal | lognormal | uniform
    mean: float  # seconds (uniform: the midpoint)
    std: float  # seconds (uniform: unused, 0)
    min_sec: float
    max_sec: float
    explicit_bounds: bool = False

    @property
    def label(self) -> str:
        """`normal(5.5,2.0)`; bounds appear only when the user gave them, so the default label stays short."""
        if self.kind == "uniform":
            return f"uniform({_fmt(self.min_sec)},{_fmt(self.max_sec)})"
        parts = [self.mean, self.std] + ([self.min_sec, self.max_sec] if self.explicit_bounds else [])
        return f"{self.kind}({','.join(_fmt(p) for p in parts)})"

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """`count` lengths in seconds, each within [min_sec, max_sec]."""
        import numpy as np

        out = np.empty(0)
        for _ in range(100):
            out = np.concatenate([out, self._draw(rng, 2 * count + 8)])
            out = out[(out >= self.min_sec) & (out <= self.max_sec)]
            if out.size >= count:
                return out[:count]
        # NB: only reachable when the bounds hold a vanishing share of the distribution; clipping then.
        return np.clip(np.concatenate([out, self._draw(rng, count)])[:count], self.min_sec, self.max_sec)

    def _draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        if self.kind == "uniform":
            return rng.uniform(self.min_sec, self.max_sec, count)
        if self.kind == "normal":
            return rng.normal(self.mean, self.std, count)
        # Log-normal parameters from the requested mean m and standard deviation s of the lengths themselves:
        # sigma^2 = ln(1 + s^2 / m^2), mu = ln(m) - sigma^2 / 2.
        sigma2 = math.log1p((self.std / self.mean) ** 2)
        return rng.lognormal(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2), count)


def parse_length_dist(text: str) -> LengthDistribution:
    """Parse `normal:5.5,2.0` and friends (module docstring); SettingError with the grammar on any mistake."""
    usage = "use normal:MEAN,STD[,MIN,MAX], lognormal:MEAN,STD[,MIN,MAX] or uniform:MIN,MAX (seconds)"
    kind, sep, rest = str(text).strip().partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in KINDS:
        raise SettingError("length_dist", f"{text!r}: {usage}")
    try:
        numbers = [float(part) for part in rest.split(",")]
    except ValueError:
        raise SettingError("length_dist", f"{text!r}: {usage}") from None
    if any(not math.isfinite(n) for n in numbers):
        raise SettingError("length_dist", f"{text!r}: numbers must be finite")
    if kind == "uniform":
        if len(numbers) != 2:
            raise SettingError("length_dist", f"{text!r}: {usage}")
        low, high = numbers
        if not 0 < low < high:
            raise SettingError("length_dist", f"{text!r}: need 0 < MIN < MAX")
        return LengthDistribution("uniform", (low + high) / 2, 0.0, low, high, True)
    if len(numbers) not in (2, 4):
        raise SettingError("length_dist", f"{text!r}: {usage}")
    mean, std = numbers[:2]
    if not mean > 0 or std < 0:
        raise SettingError("length_dist", f"{text!r}: need MEAN > 0 and STD >= 0")
    explicit = len(numbers) == 4
    low, high = numbers[2:] if explicit else (min(1.0, mean / 2), 3 * mean)
    if not 0 < low <= mean <= high:
        raise SettingError("length_dist", f"{text!r}: need 0 < MIN <= MEAN <= MAX")
    return LengthDistribution(kind, mean, std, low, high, explicit)


class LengthDistributionWorkload(Workload):
    """Noise utterances with lengths drawn per batch, zero-padded to the longest (so padding is real)."""

    def __init__(self, distribution: LengthDistribution, max_seconds: Optional[float] = None) -> None:
        self.distribution = distribution
        self.max_seconds = max_seconds
        self.name = f"synthetic:{distribution.label}"

    def batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        import numpy as np
        import torch

        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        cap = int(round(self.max_seconds * SAMPLE_RATE)) if self.max_seconds else None
        while True:
            samples = np.maximum(np.rint(self.distribution.sample(rng, batch_size) * SAMPLE_RATE), 1).astype(np.int64)
            if cap is not None:
                # Cropping noise is the same as drawing it shorter: only the length matters.
                samples = np.minimum(samples, cap)
            noise = 0.1 * torch.randn(batch_size, int(samples.max()), generator=generator)
            batch = Batch(waveforms=noise, lengths=torch.from_numpy(samples))
            batch.waveforms *= batch.attention_mask()  # silence after each utterance's end
            yield batch
