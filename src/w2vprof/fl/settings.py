"""One federated run's settings: the CLI fills them, the ServerApp sends them to every client each round.

They travel as a flat Flower ConfigRecord (str / int / float / bool), so a deployed SuperNode needs nothing but
its own `--node-config` (which partition it holds) to take part.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

from w2vprof.devices.resolve import check_device_name
from w2vprof.errors import BadInput, SettingError
from w2vprof.records import PRECISIONS

__all__ = ["AGGREGATIONS", "LOSS_WEIGHTINGS", "FlSettings", "run_config_key", "run_config_words"]

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
        from w2vprof.models.registry import get_family

        get_family(self.model)  # an unknown model: one line listing the known ones
        if self.aggregation not in AGGREGATIONS:
            raise SettingError.unknown("aggregation", self.aggregation, AGGREGATIONS)
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise SettingError.unknown("loss_weighting", self.loss_weighting, LOSS_WEIGHTINGS)
        for name in ("clients", "rounds", "local_epochs", "batch", "utterances_per_client", "validation_utterances"):
            if int(getattr(self, name)) <= 0:
                raise SettingError(name, f"must be a positive whole number, got {getattr(self, name)}")
        for name in ("temperature", "max_seconds", "round_timeout"):
            value = float(getattr(self, name))
            if not value > 0 or value == float("inf"):
                raise SettingError(name, f"must be a positive number, got {value}")
        if not 0 <= self.clients_per_round <= self.clients:
            raise SettingError(
                "clients_per_round",
                f"must be between 1 and {{clients}} ({self.clients}), got {self.clients_per_round}",
                ("clients",),
            )
        for name in ("lr", "threads"):
            if getattr(self, name) < 0:
                raise SettingError(name, f"cannot be negative, got {getattr(self, name)}")
        if self.precision not in PRECISIONS:
            raise SettingError.unknown("precision", self.precision, PRECISIONS)
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
        """Inverse of to_config; unknown keys (Flower's own, such as server-round) are ignored.

        The config is a Flower run config (a deployment's pyproject, `flwr run --run-config`) or the one the
        ServerApp sends on from it, so a bad value is reported by its run-config key (BadInput)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = run_config_key(f.name)
            if key in config:
                # Every setting has a plain default (str, int, float or bool): its type converts the value.
                kind: Callable[[Any], Any] = type(f.default)
                try:
                    values[f.name] = kind(config[key])
                except (TypeError, ValueError):
                    raise BadInput(f"run-config key {key!r} must be {kind.__name__}, got {config[key]!r}") from None
        try:
            return cls(**values)
        except SettingError as exc:
            raise exc.worded(run_config_words) from None

    def replace(self, **changes: Any) -> FlSettings:
        return dataclasses.replace(self, **changes)


def run_config_key(setting: str) -> str:
    """The Flower run-config key of a setting (`local_epochs` -> `local-epochs`): to_config's keys."""
    return setting.replace("_", "-")


def run_config_words(setting: str) -> str:
    """How a run-config error names a setting: "run-config key 'local-epochs'" (FlSettings' own settings only)."""
    return f"run-config key {run_config_key(setting)!r}" if setting in _SETTING_NAMES else setting


_SETTING_NAMES = frozenset(f.name for f in fields(FlSettings))
