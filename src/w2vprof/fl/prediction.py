"""Measured client seconds of a federated run next to what a `profile` of the same configuration predicts.

Prediction (the paper's Sec. 3.3 arithmetic, via analysis.fl_estimate): one local epoch lasts
ceil(utterances per client / batch) x sec_per_batch_median x local epochs. It is compared with the measured
`train_sec` (the local epochs alone) and `client_sec` (the whole reply: decoding the partition, loading the
weights, packing the update; in a deployment also starting the ClientApp process).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from w2vprof.errors import BadInput
from w2vprof.fl.records import RunCurves
from w2vprof.records import ResultRecord

__all__ = ["PredictionCheck", "check_prediction", "profile_rows", "summary_line", "TOLERANCE"]

#: issue 9: measured client seconds agree within 25 % with the prediction
TOLERANCE = 0.25


@dataclass
class PredictionCheck:
    run: str
    device: str
    batch: int
    utterances_per_client: int  # mean utterances a client trains on per local epoch (rounded up)
    sec_per_batch: float  # the profile's median
    predicted_epoch_sec: float
    measured_train_sec: float  # mean over client rounds
    measured_client_sec: float
    train_ratio: float  # measured_train_sec / predicted_epoch_sec
    client_ratio: float

    @property
    def train_within_tolerance(self) -> bool:
        return abs(self.train_ratio - 1) <= TOLERANCE


def _run_settings(run: RunCurves) -> dict:
    try:
        return json.loads((run.folder / "run.json").read_text())["settings"]
    except (OSError, ValueError, KeyError):
        raise BadInput(f"{run.folder}: no readable run.json (the run's settings)") from None


def check_prediction(run: RunCurves, profile_rows: list[ResultRecord], skip_rounds: int = 1) -> list[PredictionCheck]:
    """One check per usable profile row (model, batch and precision of the run; status ok).

    The first `skip_rounds` rounds are left out of the measured means: they include one-time warm-up (lazy
    imports, allocator and kernel caches) that a profile's warm-up step also leaves out.
    """
    from w2vprof.analysis.fl_estimate import FlSetting, fl_estimate

    settings = _run_settings(run)
    rows = [c for c in run.clients if c.status == "ok" and c.round > skip_rounds and c.train_sec is not None]
    if not rows:
        rows = [c for c in run.clients if c.status == "ok" and c.train_sec is not None]
    if not rows:
        raise BadInput(f"{run.folder}: no successful client rounds to compare")
    epochs = int(settings.get("local_epochs", 1))
    utterances = math.ceil(statistics.mean((c.examples or 0) for c in rows) / epochs)
    setting = FlSetting(
        clients=int(settings["clients"]),
        samples_per_client=utterances,
        batch=int(settings["batch"]),
        rounds=int(settings["rounds"]),
        local_epochs=epochs,
        model=settings["model"],
        precision=settings.get("precision", "fp32"),
    )
    train = statistics.mean(c.train_sec for c in rows if c.train_sec is not None)
    client_secs = [c.client_sec for c in rows if c.client_sec is not None]
    client = statistics.mean(client_secs) if client_secs else math.nan  # NB: a reply without timing: no ratio
    checks = []
    for estimate in fl_estimate(profile_rows, setting):
        predicted = estimate.epoch_hours * 3600
        checks.append(
            PredictionCheck(
                run=run.folder.name,
                device=estimate.device,
                batch=estimate.batch,
                utterances_per_client=utterances,
                sec_per_batch=estimate.sec_per_batch,
                predicted_epoch_sec=predicted,
                measured_train_sec=train,
                measured_client_sec=client,
                train_ratio=train / predicted if predicted else float("inf"),
                client_ratio=client / predicted if predicted else float("inf"),
            )
        )
    return checks


def profile_rows(paths: list[Path]) -> list[ResultRecord]:
    from w2vprof.records import read_results_csv

    rows: list[ResultRecord] = []
    for path in paths:
        rows.extend(read_results_csv(Path(path)))
    return rows


def summary_line(run: RunCurves) -> str:
    """First and last validation loss, client seconds and peak memory of a run, for the terminal."""
    first, last = run.rounds[0], run.rounds[-1]
    ok = [c for c in run.clients if c.status == "ok"]
    failed = len(run.clients) - len(ok)
    seconds = [c.client_sec for c in ok if c.client_sec is not None]
    peaks = [c.peak_rss_bytes for c in ok if c.peak_rss_bytes is not None]
    parts = [
        (
            f"{run.label}: validation loss {_fmt(first.validation_loss)} (round {first.round}) -> "
            f"{_fmt(last.validation_loss)} (round {last.round})"
        ),
    ]
    if seconds:
        parts.append(f"client seconds mean {statistics.mean(seconds):.2f} max {max(seconds):.2f}")
    if peaks:
        parts.append(f"peak RSS median {statistics.median(peaks) / 1e6:.0f} MB")
    parts.append(f"{len(ok)} client rounds" + (f", {failed} failed" if failed else ""))
    return "; ".join(parts)


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"
