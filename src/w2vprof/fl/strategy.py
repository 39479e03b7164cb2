"""Flower FedAvg with w2vprof's aggregation rule, validation each round and the per-round/per-client CSVs.

Flower's FedAvg samples clients and runs the rounds (Strategy.start); this subclass only changes what happens
to the replies: it weights them (aggregation.py), averages them in float64, records every client's measurements
in clients.csv, and after the server-side validation writes the round to rounds.csv.

On a simulated fleet (`fleet`, see virtual_fleet.py) each reply is also judged as its fleet device would have
fared: its virtual seconds are recorded, and an update cut by the deadline, by memory or by being unreachable gets
weight 0 (the others share the aggregate as if it had never been sent).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from w2vprof.fl import require_flwr

require_flwr()

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from w2vprof.fl.aggregation import aggregation_label, aggregation_weights, average_arrays
from w2vprof.fl.records import (
    CLIENT_COLUMNS,
    CLIENT_RULES,
    DROP_CAUSES,
    ROUND_COLUMNS,
    ROUND_RULES,
    ClientRoundRecord,
    DurableCsv,
    FleetRun,
    RoundRecord,
)
from w2vprof.fl.settings import FlSettings
from w2vprof.fl.virtual_fleet import judge_client, round_virtual_sec
from w2vprof.measure.failures import classify_error_text

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from w2vprof.workload import Batch

__all__ = ["ARRAYS_KEY", "METRICS_KEY", "MEASUREMENTS_KEY", "CONFIG_KEY", "W2vprofStrategy", "payload_bytes"]

ARRAYS_KEY = "arrays"
METRICS_KEY = "metrics"
MEASUREMENTS_KEY = "measurements"  # a ConfigRecord: may hold strings and may lack keys (MetricRecords may not)
CONFIG_KEY = "config"

logger = logging.getLogger("flwr")


def payload_bytes(arrays: ArrayRecord) -> int:
    """Serialised size of the weights in a message (numpy .npy bytes per tensor, the bulk of the message)."""
    return sum(len(array.data) for array in arrays.values())


@dataclass
class _RoundInProgress:
    started: float
    sampled: list[int] = field(default_factory=list)
    aggregated_at: Optional[float] = None
    participants: int = 0
    failures: int = 0
    train_loss: Optional[float] = None
    client_sec_max: Optional[float] = None
    payload_bytes: int = 0
    virtual_round_sec: Optional[float] = None  # on a simulated fleet only
    dropped: Optional[dict[str, int]] = None  # cause -> clients left out (on a simulated fleet only)


@dataclass
class _Replies:
    rows: list[ClientRoundRecord] = field(default_factory=list)  # one per reply or silent client, for clients.csv
    updates: list[dict[str, Any]] = field(default_factory=list)  # the usable updates...
    used_rows: list[ClientRoundRecord] = field(default_factory=list)  # ...and their rows, in the same order

    @property
    def examples(self) -> list[int]:
        return [row.examples or 0 for row in self.used_rows]

    @property
    def losses(self) -> list[float]:
        return [row.train_loss if row.train_loss is not None else float("nan") for row in self.used_rows]


class W2vprofStrategy(FedAvg):
    def __init__(
        self,
        settings: FlSettings,
        out_dir: Path,
        model: nn.Module,
        validation: list[Batch],
        on_round: Optional[Callable[[RoundRecord], None]] = None,
        fleet: Optional[FleetRun] = None,
    ) -> None:
        sampled = settings.sampled_per_round
        # fraction * clients truncates to at most `sampled`; min_train_nodes lifts it to exactly `sampled`.
        super().__init__(
            fraction_train=sampled / settings.clients,
            fraction_evaluate=0.0,  # validation runs on the server, on the held-out set
            min_train_nodes=sampled,
            min_evaluate_nodes=0,
            min_available_nodes=settings.clients,
            arrayrecord_key=ARRAYS_KEY,
            configrecord_key=CONFIG_KEY,
        )
        self.settings = settings
        self.label = aggregation_label(settings.aggregation, settings.loss_weighting, settings.temperature)
        self.model = model
        self.validation = validation
        self.on_round = on_round
        self.fleet = fleet
        # with their readers' rules: a value computed outside them is written empty, never a file `fl report` refuses
        self.rounds_csv = DurableCsv(Path(out_dir) / "rounds.csv", ROUND_COLUMNS, ROUND_RULES)
        self.clients_csv = DurableCsv(Path(out_dir) / "clients.csv", CLIENT_COLUMNS, CLIENT_RULES)
        self._round: Optional[_RoundInProgress] = None

    # -- sampling: remember who was asked, so silence is recorded too ------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        started = time.perf_counter()
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self._round = _RoundInProgress(started=started, sampled=[m.metadata.dst_node_id for m in messages])
        self._round.payload_bytes = payload_bytes(arrays) * len(messages)
        return messages

    # -- aggregation --------------------------------------------------------------------------------------------
    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[Optional[ArrayRecord], Optional[MetricRecord]]:
        progress = self._round or _RoundInProgress(started=time.perf_counter())
        read = self._read_replies(server_round, list(replies), progress)
        if self.fleet is not None:
            self._judge_on_fleet(server_round, read, progress)
        weights = self._weights(server_round, read) if read.updates else None
        for row in read.used_rows:
            row.aggregation_weight = 0.0 if row.dropped else None  # stays 0 even when nothing is aggregated
        if weights is not None:
            for row, weight in zip(read.used_rows, weights):
                row.aggregation_weight = weight
            usable = [(n, loss) for n, loss, w in zip(read.examples, read.losses, weights) if w > 0]
            total = sum(n for n, _ in usable)
            progress.train_loss = sum(n * loss for n, loss in usable) / total if total else None
            progress.participants = sum(1 for w in weights if w > 0)
        progress.failures = sum(1 for r in read.rows if r.status != "ok")
        seconds = [r.client_sec for r in read.used_rows if r.client_sec is not None and not r.dropped]
        progress.client_sec_max = max(seconds) if seconds else None
        # Written before the averaging: a round that fails later still leaves what each client measured.
        self.clients_csv.extend(sorted(read.rows, key=_client_order))

        arrays: Optional[ArrayRecord] = None
        metrics: Optional[MetricRecord] = None
        if weights is not None:
            averaged = average_arrays(read.updates, weights)
            arrays = ArrayRecord({key: Array(value) for key, value in averaged.items()})
            metrics = MetricRecord({"train-loss": progress.train_loss or 0.0, "participants": progress.participants})
        progress.aggregated_at = time.perf_counter()
        self._round = progress
        return arrays, metrics

    def _read_replies(self, server_round: int, replies: list[Message], progress: _RoundInProgress) -> _Replies:
        """Every reply as a clients.csv row (errors classified), the usable updates, and a row for each sampled
        client that did not reply."""
        read = _Replies()
        expected_keys = None
        for message in replies:
            node = message.metadata.src_node_id
            if message.has_error():
                status, line = classify_error_text(message.error.reason or "")  # oom or error, one line
                read.rows.append(
                    ClientRoundRecord(
                        round=server_round,
                        client=f"node-{node}",
                        node_id=str(node),
                        status=status,
                        error=line,
                    )
                )
                continue
            row, update = _client_row(server_round, message)
            read.rows.append(row)
            if expected_keys is None:
                expected_keys = list(update)
            if list(update) != expected_keys:
                row.status, row.error = "error", "update has different tensors than the global model"
                continue
            read.updates.append(update)
            read.used_rows.append(row)
            progress.payload_bytes += row.payload_sent_bytes or 0
        replied = {int(r.node_id) for r in read.rows}
        for node in progress.sampled:
            if node not in replied:
                read.rows.append(
                    ClientRoundRecord(
                        round=server_round,
                        client=f"node-{node}",
                        node_id=str(node),
                        status="error",
                        error=f"no reply within {self.settings.round_timeout:g} s",
                    )
                )
        return read

    def _judge_on_fleet(self, server_round: int, read: _Replies, progress: _RoundInProgress) -> None:
        """Each update as its fleet device would have fared: virtual seconds, and why it is left out (if it is)."""
        assert self.fleet is not None
        verdicts = []
        for row in read.used_rows:
            if row.partition_id is None:  # only the simulation names partitions; a deployment has no fleet
                continue
            verdict = judge_client(self.fleet, server_round, row.partition_id, row.steps or 0, self.settings.seed)
            row.fleet_device, row.virtual_sec, row.dropped = verdict.fleet_device, verdict.virtual_sec, verdict.dropped
            verdicts.append(verdict)
        progress.virtual_round_sec = round_virtual_sec(self.fleet, verdicts)
        progress.dropped = {cause: sum(1 for v in verdicts if v.dropped == cause) for cause in DROP_CAUSES}

    def _weights(self, server_round: int, read: _Replies) -> Optional[list[float]]:
        """The aggregation rule's weights; an update the fleet left out weighs exactly 0 and the rest are
        normalised among themselves (the rule treats a client without examples or loss as absent)."""
        kept = [not row.dropped for row in read.used_rows]
        try:
            return aggregation_weights(
                [n if ok else 0 for n, ok in zip(read.examples, kept)],
                [loss if ok else math.nan for loss, ok in zip(read.losses, kept)],
                self.settings.aggregation,
                self.settings.loss_weighting,
                self.settings.temperature,
            )
        except ValueError as exc:
            why = "the fleet left every update out" if not any(kept) else str(exc)
            logger.warning("round %d: nothing aggregated (%s); the global model stays as it was", server_round, why)
            return None

    # -- server-side validation (Strategy.start's evaluate_fn): closes the round ---------------------------------
    def evaluate(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        from w2vprof.fl.task import fl_family, validation_loss

        started = time.perf_counter()
        device = next(self.model.parameters()).device
        state = arrays.to_torch_state_dict()
        self.model.load_state_dict({k: v.to(device) for k, v in state.items()})
        family = fl_family(self.settings)
        loss, contrastive = validation_loss(self.model, self.validation, seed=self.settings.seed, family=family)
        finished = time.perf_counter()
        progress = self._round if server_round > 0 else None
        record = RoundRecord(
            round=server_round,
            aggregation=self.label,
            validation_loss=loss,
            validation_contrastive_loss=contrastive,
            validation_utterances=sum(b.size for b in self.validation),
            validation_sec=finished - started,
        )
        if progress is not None:
            record.participants = progress.participants
            record.failures = progress.failures
            record.train_loss = progress.train_loss
            record.round_sec = finished - progress.started
            record.train_phase_sec = (progress.aggregated_at or finished) - progress.started
            record.client_sec_max = progress.client_sec_max
            record.payload_bytes = progress.payload_bytes
            record.virtual_round_sec = progress.virtual_round_sec
            for cause, count in (progress.dropped or {}).items():
                setattr(record, f"dropped_{cause}", count)
        self.rounds_csv.append(record)
        self._round = None
        if self.on_round is not None:
            self.on_round(record)
        logger.info(
            "w2vprof round %d: validation loss %.4f (%s, %d participants)",
            server_round,
            loss,
            self.label,
            record.participants,
        )
        return MetricRecord({"validation-loss": loss, "validation-contrastive-loss": contrastive})


def _client_order(row: ClientRoundRecord) -> tuple:
    return (row.partition_id is None, row.partition_id or 0, row.client)


def _scalar_metric(metrics: MetricRecord, key: str, default: float) -> float:
    """One number a client reported (this project's clients report no lists); `default` when absent."""
    value = metrics.get(key, default)
    return float(value) if isinstance(value, (int, float)) else default


def _client_row(server_round: int, message: Message) -> tuple[ClientRoundRecord, dict[str, Any]]:
    content = message.content
    metrics: MetricRecord = content.metric_records.get(METRICS_KEY) or next(
        iter(content.metric_records.values()), MetricRecord()
    )
    measured = dict(content.config_records.get(MEASUREMENTS_KEY, {}))
    arrays = content.array_records.get(ARRAYS_KEY) or next(iter(content.array_records.values()))
    node = message.metadata.src_node_id
    row = ClientRoundRecord(round=server_round, node_id=str(node))
    for name in CLIENT_COLUMNS:
        if name in measured and name not in ("round", "node_id", "schema_version"):
            setattr(row, name, measured[name])
    row.client = str(measured.get("client") or f"node-{node}")
    row.examples = int(_scalar_metric(metrics, "num-examples", 0))
    row.train_loss = _scalar_metric(metrics, "train-loss", float("nan"))
    row.payload_sent_bytes = payload_bytes(arrays)  # what the server received: the client's upload
    update = {key: array.numpy() for key, array in arrays.items()}
    return row, update
