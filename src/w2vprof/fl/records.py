"""rounds.csv and clients.csv: one row per round, one row per client per round, appended durably.

Each row goes down in one write() of whole lines followed by fsync, the moment its round ends, so a run killed
at round 57 of 150 keeps 56 rounds of results (the header is written and synced before the first round).
Columns carry their units (seconds, bytes, joules); docs/federated.md describes every one.

Schema history:
  1 - first release.
  2 - a simulated fleet (`fl simulate --fleet`; the columns are empty otherwise). rounds.csv: virtual_round_sec and
      one dropped_<cause> count per cause in DROP_CAUSES; clients.csv: fleet_device, virtual_sec, dropped.
      Appended after schema_version: the columns of version 1 keep their places.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from w2vprof.errors import BadInput
from w2vprof.files import read_text, write_text_atomic
from w2vprof.records import RecordCsv, RowRules, read_records

__all__ = [
    "FL_SCHEMA_VERSION",
    "DROP_CAUSES",
    "RoundRecord",
    "ClientRoundRecord",
    "ROUND_COLUMNS",
    "CLIENT_COLUMNS",
    "DurableCsv",
    "ROUND_RULES",
    "CLIENT_RULES",
    "read_rounds_csv",
    "read_clients_csv",
    "check_new_run_folder",
    "FleetLineRecord",
    "FleetMixDays",
    "FleetRun",
    "FLEET_FILE",
    "write_fleet_json",
    "read_fleet_json",
    "RunCurves",
    "load_run",
]

FL_SCHEMA_VERSION = 2

#: Why a simulated fleet leaves a client's update out of a round's aggregate (clients.csv `dropped`): its device
#: cannot hold the configuration (an oom row or feasibility's memory fit), its rows say the configuration is
#: unsupported there, its virtual time passed the deadline, or it was unreachable (its line's availability).
DROP_CAUSES = ("memory", "unsupported", "deadline", "unavailable")


#: The files a federated run writes (rounds.csv, then one row per client and round in clients.csv).
RESULT_FILES = ("rounds.csv", "clients.csv")


@dataclass
class RoundRecord:
    """One federated round, as the server saw it. Round 0 is the initial model (validation only)."""

    round: int = 0
    aggregation: str = ""  # fedavg | loss:exp(T=1) | loss:inverse
    participants: int = 0  # clients whose update was aggregated
    failures: int = 0  # sampled clients that replied with an error (or not at all)
    train_loss: Optional[float] = None  # example-weighted mean of the participants' mean training loss
    validation_loss: Optional[float] = None  # full objective of the aggregated model on the held-out set
    validation_contrastive_loss: Optional[float] = None
    validation_utterances: int = 0
    round_sec: Optional[float] = None  # wall seconds from sending the model to the end of validation
    train_phase_sec: Optional[float] = None  # wall seconds from sending the model to aggregating the updates
    validation_sec: Optional[float] = None
    client_sec_max: Optional[float] = None  # the slowest participant's client_sec: what a round waits for
    payload_bytes: Optional[int] = None  # weights sent to and received from all participants this round
    schema_version: int = FL_SCHEMA_VERSION

    # --- schema 2: a simulated fleet (empty without --fleet); appended so version 1's columns keep their places
    virtual_round_sec: Optional[float] = None  # s on the fleet: the slowest client that made it, or the deadline
    dropped_memory: Optional[int] = None  # clients left out of the aggregate, per cause (DROP_CAUSES)
    dropped_unsupported: Optional[int] = None
    dropped_deadline: Optional[int] = None
    dropped_unavailable: Optional[int] = None


@dataclass
class ClientRoundRecord:
    """One client in one round: what its local training cost where it ran."""

    round: int = 0
    client: str = ""  # client-name from --node-config, else partition-<id>, else node-<id>
    node_id: str = ""  # Flower's node id (random per SuperNode)
    partition_id: Optional[int] = None
    status: str = "ok"  # ok | oom | error (w2vprof.measure.failures classifies a client's error reply)
    error: str = ""
    aggregation_weight: Optional[float] = None  # normalised weight of this update in the aggregate (sums to 1)
    train_loss: Optional[float] = None  # mean full objective over the local steps of the round
    train_contrastive_loss: Optional[float] = None
    examples: Optional[int] = None  # utterances trained on this round (local epochs x partition size)
    steps: Optional[int] = None  # optimizer steps this round
    audio_sec: Optional[float] = None  # seconds of audio trained on this round (after cropping)
    load_sec: Optional[float] = None  # wall seconds decoding the partition's audio this round
    train_sec: Optional[float] = None  # wall seconds of the local epochs (forward, backward, AdamW)
    client_sec: Optional[float] = None  # wall seconds of the whole reply: load data + weights, train, pack
    cpu_sec: Optional[float] = None  # CPU seconds of the client process (all threads) during client_sec
    peak_rss_bytes: Optional[int] = None  # resident high-water mark of the client process in this round
    start_rss_bytes: Optional[int] = None  # resident set when the round started (peak - start = round's own)
    peak_mem_source: str = ""  # vmhwm-reset | vmhwm-process | ru_maxrss-process
    peak_device_mem_bytes: Optional[int] = None  # torch.cuda.max_memory_allocated of the round (cuda only)
    payload_received_bytes: Optional[int] = None  # serialised weights received from the server
    payload_sent_bytes: Optional[int] = None  # serialised weights sent back
    energy_j: Optional[float] = None  # energy of the round where device telemetry exists
    energy_source: str = ""  # where energy_j came from (nvml, rapl, jetson rail, ...); empty: no sensor
    device: str = ""  # torch device kind the client trained on
    threads: Optional[int] = None  # torch intra-op threads
    schema_version: int = FL_SCHEMA_VERSION

    # --- schema 2: a simulated fleet (empty without --fleet); appended so version 1's columns keep their places
    fleet_device: str = ""  # the fleet device this client stands for (`device` is the torch device it ran on)
    virtual_sec: Optional[float] = None  # s on that device: measured s/batch x its steps + its transfers
    dropped: str = ""  # why its update was left out of the aggregate (DROP_CAUSES); '' when it was not


ROUND_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RoundRecord))
CLIENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ClientRoundRecord))


#: fl's durable appender: one write + fsync per call (a round's client rows in one write), header on creation.
DurableCsv = RecordCsv

ROUND_RULES = RowRules(
    what="federated rounds",
    required=("round", "aggregation", "validation_loss"),
    any_float=frozenset({"train_loss", "validation_loss", "validation_contrastive_loss"}),
    schema_version=FL_SCHEMA_VERSION,
)
CLIENT_RULES = RowRules(
    what="federated clients",
    required=("round", "client", "client_sec"),
    any_float=frozenset({"train_loss", "train_contrastive_loss"}),
    choices=(("status", ("ok", "oom", "error")), ("dropped", DROP_CAUSES)),
    schema_version=FL_SCHEMA_VERSION,
)


def read_rounds_csv(path: Path) -> list[RoundRecord]:
    """rounds.csv, every row checked (numbers finite and >= 0; losses may be NaN: a diverged run). No rows is
    fine (a run stopped before its first round)."""
    return read_records(path, RoundRecord, ROUND_RULES, require_rows=False)


def read_clients_csv(path: Path) -> list[ClientRoundRecord]:
    """clients.csv, every row checked like rounds.csv, status ok, oom or error."""
    return read_records(path, ClientRoundRecord, CLIENT_RULES, require_rows=False)


# --- a run folder ----------------------------------------------------------------------------------------------
# NB (H-FILES): this section was restored after an edit of mine dropped it by accident; it is the code that lived in
# fl/plots.py (RunCurves, load_run) and cli/fl.py (the run-folder check) before the move.


def check_new_run_folder(out: Path) -> None:
    """BadInput unless `out` can take a new run: a folder (or nothing yet) without rounds.csv or clients.csv."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out} exists and is not a folder")
    existing = [name for name in RESULT_FILES if (out / name).exists()]
    if existing:
        raise BadInput(f"{out} already holds {', '.join(existing)} of another run; choose a new folder")


# --- fleet.json: the fleet a simulated run was priced on (`fl simulate --fleet`) ---------------------------------
#: Beside rounds.csv in a fleet run's folder.
FLEET_FILE = "fleet.json"


@dataclass(frozen=True)
class FleetLineRecord:
    """One line of the fleet file as priced at the run's configuration."""

    line: int  # line in the fleet file (2 = the first row under the header)
    device: str
    count: int
    availability: float
    excluded: str  # '' when its clients can train; else oom, unsupported, or feasibility's memory verdict
    sec_per_batch: Optional[float]  # s, measured at the run's model, batch, precision and `seconds`
    communication_sec: Optional[float]  # s, model download + update upload over its links (None: no links)


@dataclass(frozen=True)
class FleetMixDays:
    """fl-estimate --fleet of one fleet mix (the run's whole fleet, or the clients of one device type)."""

    mix: str  # "fleet" (every line) or a device name (its lines only)
    clients: int
    clients_per_round: int  # K
    round_sec_mean: Optional[float]  # None: no client of the mix can train the configuration
    days_mean: Optional[float]
    days_p5: Optional[float]
    days_p95: Optional[float]
    updates_per_round: Optional[float]  # mean updates aggregated per round (0: the deadline cuts every one)
    note: str = ""  # why there are no figures


@dataclass(frozen=True)
class FleetRun:
    """fleet.json: how a simulated run's clients stand for a fleet, and what the fleet estimate says of it."""

    fleet_file: str
    seconds: float  # utterance length of the rows that priced the batches
    deadline_sec: Optional[float]
    update_bytes: Optional[int]  # one model copy on the wire (None: no links)
    rounds: int
    lines: tuple[FleetLineRecord, ...]
    assignment: tuple[int, ...]  # partition id -> index into lines
    mixes: tuple[FleetMixDays, ...] = field(default=())

    def line_of(self, partition_id: int) -> FleetLineRecord:
        return self.lines[self.assignment[partition_id]]


def write_fleet_json(folder: Path, fleet: FleetRun) -> None:
    write_text_atomic(Path(folder) / FLEET_FILE, json.dumps(asdict(fleet), indent=2) + "\n")


def read_fleet_json(path: Path) -> FleetRun:
    """fleet.json back into a FleetRun; anything else is BadInput naming the file."""
    try:
        data: Any = json.loads(read_text(Path(path), "fleet JSON"))
        fleet = FleetRun(
            **{
                **data,
                "lines": tuple(FleetLineRecord(**line) for line in data["lines"]),
                "assignment": tuple(int(index) for index in data["assignment"]),
                "mixes": tuple(FleetMixDays(**mix) for mix in data.get("mixes", ())),
            }
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        raise BadInput(f"{path}: not a w2vprof fleet.json (written by w2vprof fl simulate --fleet)") from None
    if any(not 0 <= index < len(fleet.lines) for index in fleet.assignment):
        raise BadInput(f"{path}: a partition is assigned to a fleet line the file does not hold")
    return fleet


class RunCurves:
    """One run folder's rows and the label its curve carries; `fleet` for a run simulated on a fleet."""

    def __init__(
        self,
        folder: Path,
        rounds: list[RoundRecord],
        clients: list[ClientRoundRecord],
        fleet: Optional[FleetRun] = None,
    ) -> None:
        self.folder = Path(folder)
        self.rounds = rounds
        self.clients = clients
        self.fleet = fleet
        aggregation = rounds[0].aggregation if rounds else "?"
        self.label = f"{aggregation} ({self.folder.name})"


def load_run(folder: Path) -> RunCurves:
    """A federated run folder's rounds.csv and clients.csv (absent: no client rows), and its fleet.json if any."""
    folder = Path(folder)
    if not (folder / "rounds.csv").is_file():
        raise BadInput(f"{folder}: not a federated run folder (no rounds.csv)")
    clients_path = folder / "clients.csv"
    clients = read_clients_csv(clients_path) if clients_path.is_file() else []
    fleet = read_fleet_json(folder / FLEET_FILE) if (folder / FLEET_FILE).is_file() else None
    return RunCurves(folder, read_rounds_csv(folder / "rounds.csv"), clients, fleet)
