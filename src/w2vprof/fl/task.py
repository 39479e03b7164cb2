"""The work of one round, independent of Flower: local pretraining on a partition, and validation loss.

`train_round` is what a client runs and measures; `validation_loss` is what the server runs on the aggregated
model. Both use the project's own model, objective and training step (w2vprof.measure.step), so a client round
costs what `w2vprof profile` measures for the same configuration, plus data loading and (de)serialisation. The
model, its targets and its loss come from its family (w2vprof.models.family: wav2vec 2.0, HuBERT, WavLM, ...), so
every model trains alike; the objective's main term (`main_term`: contrastive, masked prediction) is logged beside
the whole loss, in the columns named `*_contrastive_loss` since wav2vec 2.0 was the only model.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from w2vprof.fl.memory import PeakMemory, read_peak, release_free_memory, reset_peak
from w2vprof.fl.settings import FlSettings
from w2vprof.workload import SAMPLE_RATE

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from w2vprof.models.family import LossOutput, ModelFamily
    from w2vprof.workload import Batch

__all__ = [
    "RoundMeter",
    "LocalResult",
    "build_fl_model",
    "fl_family",
    "main_term",
    "train_round",
    "validation_batches",
    "validation_loss",
    "torch_device",
    "run_seed",
]


def torch_device(kind: str) -> torch.device:
    """The run's `device` setting as a torch device; one this machine lacks is bad input (w2vprof.devices.resolve)."""
    import torch

    from w2vprof.devices.resolve import resolve_device

    return torch.device(resolve_device(kind))


def fl_family(settings: FlSettings) -> ModelFamily:
    """The run's model family, its optimizer at the run's learning rate if given (the family's own otherwise)."""
    import copy
    from dataclasses import replace

    from w2vprof.models.registry import get_family

    family = get_family(settings.model)
    if settings.lr > 0:
        family = copy.copy(family)  # the registry's instance is shared: the run's learning rate stays in the run
        own = family.optimizer_settings
        setattr(family, "optimizer_settings", lambda model: replace(own(model), lr=settings.lr))  # noqa: B010
    return family


def build_fl_model(settings: FlSettings) -> nn.Module:
    """The model every participant builds: the named model for its first objective (pretraining for the
    built-in models)."""
    family = fl_family(settings)
    return family.build(family.objectives[0])


def main_term(output: LossOutput) -> float:
    """The objective's main term (its first named part: wav2vec 2.0's contrastive loss, HuBERT's masked
    prediction, CTC); the whole loss where the family names no part."""
    first = next(iter(output.parts.values()), output.loss)
    return float(first.detach())


class RoundMeter:
    """Wall, CPU, peak memory (reset per round) and energy of one client round, started before anything loads."""

    def __init__(self, device_kind: str) -> None:
        self.device_kind = device_kind
        self._telemetry: Any = None

    def start(self) -> RoundMeter:
        release_free_memory()
        self._reset_worked, self._start_rss = reset_peak()
        if self.device_kind == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
        try:
            from w2vprof.devices.telemetry import TelemetrySampler
        except ImportError:  # telemetry is optional: energy stays empty without it
            pass
        else:
            try:
                self._telemetry = TelemetrySampler(self.device_kind)
                self._telemetry.start()
            except Exception:  # noqa: BLE001 - a sensor that fails must not fail the round
                self._telemetry = None
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        return self

    def stop(self, steps: int) -> dict[str, Any]:
        wall = time.perf_counter() - self._wall
        cpu = time.process_time() - self._cpu
        peak: PeakMemory = read_peak(self._reset_worked, self._start_rss)
        result: dict[str, Any] = {
            "client_sec": wall,
            "cpu_sec": cpu,
            "peak_rss_bytes": peak.peak_rss_bytes,
            "start_rss_bytes": peak.start_rss_bytes,
            "peak_mem_source": peak.source,
            "peak_device_mem_bytes": None,
            "energy_j": None,
            "energy_source": "",
        }
        if self.device_kind == "cuda":
            import torch

            result["peak_device_mem_bytes"] = int(torch.cuda.max_memory_allocated())
        if self._telemetry is not None:
            try:
                fields = self._telemetry.stop(max(steps, 1))
            except Exception:  # noqa: BLE001 - a sensor that fails to stop loses energy, never the round
                fields = {}
            per_batch = fields.get("energy_j_per_batch")
            if per_batch is not None:
                result["energy_j"] = float(per_batch) * max(steps, 1)
                result["energy_source"] = str(fields.get("energy_source", ""))
        return result


@dataclass
class LocalResult:
    state: dict[str, torch.Tensor]
    train_loss: float
    train_contrastive_loss: float
    examples: int
    steps: int
    audio_sec: float
    train_sec: float
    threads: int


def train_round(
    state: dict[str, torch.Tensor],
    utterances: list[torch.Tensor],
    settings: FlSettings,
    server_round: int,
    partition_seed: int,
) -> LocalResult:
    """`settings.local_epochs` passes over `utterances` from the global weights `state`, a fresh AdamW each round.

    NB: AdamW state does not travel between rounds (the paper's FedAvg setting); its first steps each round
    therefore use unwarmed moments.
    """
    import torch

    from w2vprof.devices.sync import synchronize
    from w2vprof.fl.data import epoch_batches
    from w2vprof.measure.step import TrainingStep

    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = torch_device(settings.device)
    torch.manual_seed(run_seed(settings.seed, server_round, partition_seed))
    family = fl_family(settings)
    model = family.build(family.objectives[0])
    model.load_state_dict(state)
    model.to(device).train()
    step = TrainingStep.create(model, device_kind=device.type, precision=settings.precision, family=family)
    max_samples = int(settings.max_seconds * SAMPLE_RATE)
    losses, contrastive, examples, audio_samples = [], [], 0, 0
    started = time.perf_counter()
    for epoch in range(settings.local_epochs):
        order_seed = run_seed(settings.seed, server_round, partition_seed, epoch)
        for batch in epoch_batches(utterances, settings.batch, max_samples, seed=order_seed):
            output = step.run(_to(batch, device))  # its targets made first, by the family
            losses.append(float(output.loss.detach()))
            contrastive.append(main_term(output))
            examples += batch.size
            audio_samples += int(batch.lengths.sum())
    synchronize(device.type)  # the last steps' kernels are still queued on a GPU (CUDA or MPS)
    train_sec = time.perf_counter() - started
    return LocalResult(
        state={k: v.detach().cpu() for k, v in model.state_dict().items()},
        train_loss=_mean(losses),
        train_contrastive_loss=_mean(contrastive),
        examples=examples,
        steps=len(losses),
        audio_sec=audio_samples / SAMPLE_RATE,
        train_sec=train_sec,
        threads=torch.get_num_threads(),
    )


def run_seed(*parts: int) -> int:
    """A stable seed from several integers (Python's hash() of a str is randomised per process)."""
    return zlib.crc32(repr(parts).encode())


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if len(finite) == len(values) and values else float("nan")


def _to(batch: Batch, device: torch.device) -> Batch:
    if device.type == "cpu":
        return batch
    from w2vprof.workload import Batch

    return Batch(waveforms=batch.waveforms.to(device), lengths=batch.lengths.to(device))


def validation_batches(utterances: list[torch.Tensor], settings: FlSettings) -> list[Batch]:
    """The held-out set cut once, in a fixed order and fixed crops, so every round scores the same audio."""
    from w2vprof.fl.data import epoch_batches

    return epoch_batches(
        utterances, settings.batch, int(settings.max_seconds * SAMPLE_RATE), seed=settings.seed, shuffle=False
    )


def validation_loss(
    model: nn.Module, batches: list[Batch], seed: int, family: Optional[ModelFamily] = None
) -> tuple[float, float]:
    """(full objective, its main term), over the held-out batches weighted by what each loss is a mean over
    (`LossOutput.count`: masked frames in pretraining, utterances in CTC), in eval mode.

    Masks, negatives and targets are drawn from a fixed seed in a forked RNG, so two rounds differ only by their
    weights. `family`: by default the built-in model's own.
    """
    import torch

    from w2vprof.measure.step import family_of_model

    family = family if family is not None else family_of_model(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = contrastive = weight = 0.0
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for batch in batches:
                on_device = _to(batch, device)
                output = family.loss(model, on_device, family.make_targets(on_device, model))
                count = float(output.count)
                total += float(output.loss) * count
                contrastive += main_term(output) * count
                weight += count
    finally:
        model.train(was_training)
    return total / weight, contrastive / weight
