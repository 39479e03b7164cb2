"""One federated run's settings: the CLI fills them, the ServerApp sends them to every client each round.

They travel as a flat Flower ConfigRecord (str / int / float / bool), so a deployed SuperNode needs nothing but
its own `--node-config` (which partition it holds) to take part.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

from w2vprof.devices.resolve import check_device_name
from w2vprof.errors import BadInput

__all__ = ["AGGREGATIONS", "LOSS_WEIGHTINGS", "FlSettings"]

AGGREGATIONS = ("fedavg", "loss")
LOSS_WEIGHTINGS = ("exp", "inverse")
SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class FlSettings:
    model: str = "tiny"
    clients: int = 10
    rounds: int = 20
    clients_per_round: int = 0  # 0: every client, every round
    aggregation: str = "fedavg"  # fedavg (weight = examples) | loss (weight from the client's training loss)
    loss_weighting: str = "exp"  # exp: exp(-loss / T) | inverse: 1 / loss
    temperature: float = 1.0  # T of the exp weighting
    local_epochs: int = 1
    batch: int = 4
    lr: float = 0.0  # 0: the model configuration's pretraining learning rate
    max_seconds: float = 15.0  # longer utterances are cropped to a random window this long (as wav2vec 2.0 does)
    partitions: str = SYNTHETIC  # a partitions folder (`w2vprof partition`), or "synthetic": generated first
    clips_dir: str = ""  # where the manifests' clips are; "": a clips/ beside the manifests or one level up
    validation: str = ""  # held-out manifest or audio folder; "": heldout.tsv (or heldout/) in the partitions
    utterances_per_client: int = 8  # synthetic partitions only: utterances of each client's speaker
    validation_utterances: int = 16  # held-out utterances scored each round (the first ones of the set)
    device: str = "cpu"  # where clients and the server-side validation run
    precision: str = "fp32"
    threads: int = 0  # torch threads per client; 0: torch's default
    seed: int = 0
    round_timeout: float = 3600.0  # seconds the server waits for a round's replies; silent clients count as failed
    out_dir: str = ""  # where the ServerApp writes rounds.csv, clients.csv and run.json

    def __post_init__(self) -> None:
        from w2vprof.models import get_config

        get_config(self.model)
        if self.aggregation not in AGGREGATIONS:
            raise BadInput(f"unknown --aggregation {self.aggregation!r}; choose from {', '.join(AGGREGATIONS)}")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise BadInput(
                f"unknown --loss-weighting {self.loss_weighting!r}; choose from {', '.join(LOSS_WEIGHTINGS)}"
            )
        for name in ("clients", "rounds", "local_epochs", "batch", "utterances_per_client", "validation_utterances"):
            if int(getattr(self, name)) <= 0:
                raise BadInput(f"--{name.replace('_', '-')} must be a positive whole number, got {getattr(self, name)}")
        for name in ("temperature", "max_seconds", "round_timeout"):
            value = float(getattr(self, name))
            if not value > 0 or value == float("inf"):
                raise BadInput(f"--{name.replace('_', '-')} must be a positive number, got {value}")
        if not 0 <= self.clients_per_round <= self.clients:
            raise BadInput(f"--clients-per-round must be between 1 and --clients ({self.clients})")
        if self.lr < 0 or self.threads < 0:
            raise BadInput("--lr and --threads cannot be negative")
        if self.precision not in ("fp32", "mixed"):
            raise BadInput(f"unknown --precision {self.precision!r}; choose from fp32, mixed")
        check_device_name(self.device, allow_auto=False)  # availability is each participant's to check

    @property
    def sampled_per_round(self) -> int:
        return self.clients_per_round or self.clients

    @property
    def synthetic(self) -> bool:
        return self.partitions == SYNTHETIC

    def to_config(self) -> dict[str, Any]:
        """Flat str/int/float/bool values, as Flower's ConfigRecord and a Flower app's run config take them."""
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FlSettings:
        """Inverse of to_config; unknown keys (Flower's own, such as server-round) are ignored."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = f.name.replace("_", "-")
            if key in config:
                # Every setting has a plain default (str, int, float or bool): its type converts the value.
                kind: Callable[[Any], Any] = type(f.default)
                values[f.name] = kind(config[key])
        return cls(**values)

    def replace(self, **changes: Any) -> FlSettings:
        return dataclasses.replace(self, **changes)

