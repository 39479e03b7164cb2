"""Federated training time (the paper's Sec. 3.3): how long `rounds` rounds of local epochs take on a device,
from its measured seconds per batch. Takes result rows (measured, or the paper's); knows no device's numbers.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

from w2vprof.analysis.data import device_label, latest_by_config, sec_per_batch
from w2vprof.errors import BadInput, SettingError
from w2vprof.records import ResultRecord, length_key

__all__ = ["FlEstimateRow", "FlSetting", "check_fleet_only", "fl_estimate", "fl_estimate_with_model_bytes"]


@dataclass(frozen=True)
class FlSetting:
    clients: int = 10
    samples_per_client: int = 19_500
    batch: int = 4
    rounds: int = 150
    local_epochs: float = 1.0
    clients_per_round: Optional[int] = None  # None: every client trains every round
    model: str = "base"
    precision: str = "fp32"
    seconds: Optional[float] = None  # utterance length of the rows to use (None: every length measured)
    bandwidth_mbps: Optional[float] = None  # client link, megabits per second, each direction
    model_bytes: Optional[int] = None  # one model copy on the wire (default: the row's param_bytes)


@dataclass
class FlEstimateRow:
    device: str
    model: str
    precision: str
    batch: int
    seconds: float  # utterance length of the measurement used
    sec_per_batch: float
    batches_per_epoch: int  # ceil(samples_per_client / batch)
    epoch_hours: float  # one local epoch on one client
    local_epochs: float
    communication_hours_per_round: Optional[float]  # download + upload of one model copy (with --bandwidth)
    round_hours: float  # local_epochs x epoch_hours + communication
    rounds: int
    total_hours: float  # rounds x round_hours: clients train concurrently
    total_days: float
    clients_per_round: int
    rounds_per_client: float  # rounds x clients_per_round / clients: how often one client trains
    device_hours: float  # compute spent by all clients together: rounds x clients_per_round x local training
    source: str


def _check_setting(setting: FlSetting) -> None:
    for name in ("clients", "samples_per_client", "batch", "rounds"):
        if getattr(setting, name) <= 0:
            raise SettingError(name, f"must be positive, got {getattr(setting, name)}")
    if not setting.local_epochs > 0:
        raise SettingError("local_epochs", f"must be positive, got {setting.local_epochs:g}")
    if setting.clients_per_round is not None and not 0 < setting.clients_per_round <= setting.clients:
        raise SettingError(
            "clients_per_round",
            f"must be between 1 and {{clients}} ({setting.clients}), got {setting.clients_per_round}",
            ("clients",),
        )
    if setting.bandwidth_mbps is not None and not setting.bandwidth_mbps > 0:
        raise SettingError("bandwidth", f"must be positive, got {setting.bandwidth_mbps:g}")


def fl_estimate(rows: list[ResultRecord], setting: FlSetting) -> list[FlEstimateRow]:
    """Clients train concurrently, so a round lasts as long as one client's local epochs (plus its transfers).

    One row per device and measured utterance length (filter with `setting.seconds`).
    NB: FedAvg's server-side aggregation is ignored: it is seconds per round against hours of training.
    """
    _check_setting(setting)
    return [_estimate_row(record, setting) for record in _usable_rows(rows, setting)]


def _usable_rows(rows: list[ResultRecord], setting: FlSetting) -> list[ResultRecord]:
    """The latest timed ok row of each device at the setting's model, precision and batch (and length, if set)."""
    usable = [
        r
        for r in latest_by_config(rows).values()
        if r.model == setting.model
        and r.precision == setting.precision
        and r.batch == setting.batch
        and r.status == "ok"
        and sec_per_batch(r) is not None
        and (setting.seconds is None or length_key(r.seconds) == length_key(setting.seconds))
    ]
    if not usable:
        raise BadInput(
            f"no usable rows: need a status ok row for model {setting.model}, batch {setting.batch}, precision "
            f"{setting.precision}"
            + (f" at {setting.seconds:g} s" if setting.seconds else "")
            + " (give results files, or set reference to paper)"
        )
    return usable


def _communication_hours(record: ResultRecord, setting: FlSetting) -> Optional[float]:
    """Download of the global model and upload of the update (two copies per round), with a bandwidth; None
    without one, or when neither the setting nor the row knows the model's bytes."""
    if not setting.bandwidth_mbps:
        return None
    payload = setting.model_bytes or record.param_bytes
    if not payload:
        return None
    return 2 * payload * 8 / (setting.bandwidth_mbps * 1e6) / 3600  # bits over bits/s


def _estimate_row(record: ResultRecord, setting: FlSetting) -> FlEstimateRow:
    """One device's local epoch, round and whole training from its seconds per batch."""
    per_round = setting.clients_per_round or setting.clients
    batches = math.ceil(setting.samples_per_client / setting.batch)
    seconds_per_batch = sec_per_batch(record) or 0.0  # never 0: usable rows have a time
    epoch_h = batches * seconds_per_batch / 3600
    training_h = epoch_h * setting.local_epochs
    communication_h = _communication_hours(record, setting)
    round_h = training_h + (communication_h or 0.0)
    total_h = round_h * setting.rounds
    return FlEstimateRow(
        device=device_label(record),
        model=record.model,
        precision=record.precision,
        batch=record.batch,
        seconds=record.seconds,
        sec_per_batch=seconds_per_batch,
        batches_per_epoch=batches,
        epoch_hours=epoch_h,
        local_epochs=setting.local_epochs,
        communication_hours_per_round=communication_h,
        round_hours=round_h,
        rounds=setting.rounds,
        total_hours=total_h,
        total_days=total_h / 24,
        clients_per_round=per_round,
        rounds_per_client=setting.rounds * per_round / setting.clients,
        device_hours=setting.rounds * per_round * training_h,
        source=record.source,
    )


def fl_estimate_with_model_bytes(rows: list[ResultRecord], setting: FlSetting) -> tuple[FlSetting, list[FlEstimateRow]]:
    """fl_estimate, where a bandwidth is set and a row carries no parameter bytes (the paper's rows) with the
    model's bytes counted on the meta device (no memory, no weights). Returns the setting the rows were
    estimated with (its model_bytes filled in that case) and the rows.

    NB: mixed precision still sends FP32 master weights, so FP32 bytes either way.
    """
    estimates = fl_estimate(rows, setting)
    if setting.bandwidth_mbps is not None and any(r.communication_hours_per_round is None for r in estimates):
        from w2vprof.models.size import parameter_bytes

        setting = dataclasses.replace(setting, model_bytes=parameter_bytes(setting.model))
        estimates = fl_estimate(rows, setting)
    return setting, estimates


def check_fleet_only(fleet: bool, deadline_s: Optional[float], over_commit: float) -> None:
    """A round's deadline and over-commitment shape the rounds of a mixed fleet: without a fleet they would be
    silently ignored, so they are bad input."""
    if not fleet and (deadline_s is not None or over_commit != 1.0):
        raise SettingError("deadline", "and {over_commit} need {fleet}", ("over_commit", "fleet"))
