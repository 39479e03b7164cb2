"""The Flower ClientApp: local wav2vec 2.0 pretraining on this client's partition, measured.

Which partition a client holds comes from its node config: `partition-path` (a manifest or audio folder; set by
`flower-supernode --node-config` on a device) or `partition-id` (set by the simulation engine for each virtual
SuperNode, resolved against the run's --partitions). Everything else (model, batch, epochs) comes with the
global weights from the server, so one ClientApp serves every run.
"""

from __future__ import annotations

import time
from typing import Any, Optional, cast

from w2vprof.fl import require_flwr

require_flwr()

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from w2vprof.fl.settings import FlSettings
from w2vprof.fl.strategy import ARRAYS_KEY, CONFIG_KEY, MEASUREMENTS_KEY, METRICS_KEY, payload_bytes

__all__ = ["app", "client_name"]

app = ClientApp()


def client_name(node_config: dict[str, Any], node_id: int) -> str:
    if node_config.get("client-name"):
        return str(node_config["client-name"])
    if node_config.get("partition-id") is not None:
        return f"partition-{int(node_config['partition-id'])}"
    return f"node-{node_id}"


def _text_or_none(value: Any) -> Optional[str]:
    return None if value is None else str(value)


@app.train()
def train(message: Message, context: Context) -> Message:
    from w2vprof.fl.data import client_utterances
    from w2vprof.fl.task import RoundMeter, train_round

    config = message.content.config_records[CONFIG_KEY]
    settings = FlSettings.from_config(config)
    server_round = int(cast(int, config["server-round"]))  # Flower's own key: always an int
    node_config = dict(context.node_config)
    partition_id: Optional[int] = (
        int(node_config["partition-id"]) if node_config.get("partition-id") is not None else None
    )
    # The meter starts before anything is loaded: client_sec is the whole cost of taking part in the round.
    meter = RoundMeter(settings.device).start()
    received: ArrayRecord = message.content.array_records[ARRAYS_KEY]
    loading = time.perf_counter()
    utterances = client_utterances(
        settings,
        partition_id,
        _text_or_none(node_config.get("partition-path")),
        _text_or_none(node_config.get("clips-dir")),
    )
    load_sec = time.perf_counter() - loading
    result = train_round(
        received.to_torch_state_dict(),
        utterances,
        settings,
        server_round,
        partition_seed=partition_id if partition_id is not None else context.node_id % 1_000_003,
    )
    reply_arrays = ArrayRecord(result.state)
    measured = meter.stop(result.steps)
    measurements = {
        **{k: v for k, v in measured.items() if v is not None and v != ""},
        "client": client_name(node_config, context.node_id),
        "train_contrastive_loss": result.train_contrastive_loss,
        "steps": result.steps,
        "audio_sec": result.audio_sec,
        "load_sec": load_sec,
        "train_sec": result.train_sec,
        "payload_received_bytes": payload_bytes(received),
        "device": settings.device,
        "threads": result.threads,
    }
    if partition_id is not None:
        measurements["partition_id"] = partition_id
    content = RecordDict(
        {
            ARRAYS_KEY: reply_arrays,
            METRICS_KEY: MetricRecord({"num-examples": result.examples, "train-loss": result.train_loss}),
            MEASUREMENTS_KEY: ConfigRecord(measurements),
        }
    )
    return Message(content=content, reply_to=message)
