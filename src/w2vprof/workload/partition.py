"""Split a Common Voice style manifest into per-client manifests for federated training (paper Sec. 4.2).

By speaker: no speaker appears in two clients, and every client gets roughly the same amount of speech.
Speakers are placed largest first, each on the client with the least speech so far (greedy LPT bin packing):
a client ends at most one speaker's speech above the lightest, so with many speakers per client the spread
is a few percent. Speech per utterance comes from each clip's header (unreadable clips are left out).
"""

from __future__ import annotations

import csv
import heapq
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Union

from w2vprof.errors import BadInput, SettingError
from w2vprof.files import write_text_atomic

__all__ = [
    "BY",
    "ClientShare",
    "Partition",
    "SUMMARY_COLUMNS",
    "assign_speakers",
    "partition_manifest",
    "client_file_name",
    "summary_csv_text",
    "write_partition",
]

BY = ("speaker",)
SUMMARY_COLUMNS = ("client", "manifest", "speakers", "utterances", "speech_sec", "speech_hours")
_CLIENT_FILE = re.compile(r"client_\d+\.tsv")


@dataclass
class ClientShare:
    client: int  # 0-based
    manifest: str  # file name of this client's manifest
    speakers: list[str] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0  # speech, seconds

    @property
    def utterances(self) -> int:
        return len(self.rows)

    @property
    def hours(self) -> float:
        return self.seconds / 3600


@dataclass
class Partition:
    source: Path
    columns: list[str]  # the manifest's columns, kept for every client file
    clients: list[ClientShare]
    warnings: list[str] = field(default_factory=list)

    @property
    def spread(self) -> float:
        """Largest relative distance of a client's speech from the mean (0.05 = every client within 5 %)."""
        mean = sum(c.seconds for c in self.clients) / len(self.clients)
        return max(abs(c.seconds - mean) for c in self.clients) / mean if mean else 0.0


def assign_speakers(speaker_seconds: Mapping[str, float], clients: int, seed: int = 0) -> list[list[str]]:
    """Speakers per client: largest first onto the lightest client. `seed` orders speakers of equal speech."""
    import numpy as np

    if clients < 1:
        raise SettingError("clients", f"must be at least 1, got {clients}")
    if len(speaker_seconds) < clients:
        raise SettingError(
            "clients",
            f"{clients}: {len(speaker_seconds)} speakers cannot fill {clients} clients without a speaker "
            "in two clients",
        )
    names = sorted(speaker_seconds)
    shuffled = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    ordered = sorted(shuffled, key=lambda s: -speaker_seconds[s])  # stable: the shuffle breaks ties
    # Heap of (speech so far, speakers so far, client): ties go to the client with fewer speakers, then index.
    heap = [(0.0, 0, c) for c in range(clients)]
    assigned: list[list[str]] = [[] for _ in range(clients)]
    for speaker in ordered:
        seconds, count, client = heapq.heappop(heap)
        assigned[client].append(speaker)
        heapq.heappush(heap, (seconds + speaker_seconds[speaker], count + 1, client))
    return assigned


def client_file_name(index: int, clients: int) -> str:
    return f"client_{index:0{max(3, len(str(clients - 1)))}d}.tsv"


def partition_manifest(
    manifest: Union[str, Path],
    clients: int,
    clips_dir: Optional[Union[str, Path]] = None,
    by: str = "speaker",
    seed: int = 0,
) -> Partition:
    """Read `manifest`, measure each clip, and split its utterances into `clients` speaker-disjoint shares."""
    from w2vprof.workload.audio import AudioError, probe_audio, skipped_warning
    from w2vprof.workload.manifest import read_manifest

    if by not in BY:
        raise SettingError.unknown("by", by, BY)
    data = read_manifest(manifest, clips_dir)
    if "client_id" not in data.columns:
        raise BadInput(f"{data.path}: no 'client_id' column, so speakers are unknown")
    if not data.clips_dir.is_dir():
        raise SettingError("clips_dir", f"{data.clips_dir} does not exist (the folder of {data.path}'s clips)")
    speech: dict[str, float] = {}
    rows: dict[str, list[dict[str, str]]] = {}
    skipped: list[tuple[str, str]] = []
    for row in data.rows:
        try:
            seconds = probe_audio(data.clip_path(row)).seconds
        except AudioError as exc:
            skipped.append((row["path"], str(exc)))
            continue
        speaker = row["client_id"]
        speech[speaker] = speech.get(speaker, 0.0) + seconds
        rows.setdefault(speaker, []).append(row)
    warnings = [skipped_warning(skipped, len(data.rows), "clips")] if skipped else []
    if not speech:
        raise BadInput(
            f"{data.path}: no readable clip under {data.clips_dir}; "
            + skipped_warning(skipped, len(data.rows), "clips")
        )
    shares = []
    for index, speakers in enumerate(assign_speakers(speech, clients, seed)):
        share = ClientShare(client=index, manifest=client_file_name(index, clients), speakers=sorted(speakers))
        # Rows keep the manifest's order (a client file reads as a filtered copy); unreadable clips stay out.
        kept = {id(row) for speaker in speakers for row in rows[speaker]}
        share.rows = [row for row in data.rows if id(row) in kept]
        share.seconds = sum(speech[s] for s in speakers)
        shares.append(share)
    return Partition(source=data.path, columns=data.columns, clients=shares, warnings=warnings)


def summary_csv_text(partition: Partition) -> str:
    """summary.csv: one row per client (speech in seconds, and in hours for reading)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for c in partition.clients:
        writer.writerow(
            [c.client, c.manifest, len(c.speakers), c.utterances, repr(round(c.seconds, 3)), repr(round(c.hours, 6))]
        )
    return buffer.getvalue()


def write_partition(partition: Partition, out_dir: Union[str, Path]) -> list[Path]:
    """Write one manifest per client and summary.csv into `out_dir` (created); return the paths written.

    Client files of an earlier, larger split in the same folder are removed: a stale client_057.tsv next to a
    10-client summary would be read as part of it.
    """
    from w2vprof.workload.manifest import manifest_text

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SettingError("out", f"{out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for share in partition.clients:
            path = out / share.manifest
            write_text_atomic(path, manifest_text(partition.columns, share.rows))
            written.append(path)
        summary = out / "summary.csv"
        write_text_atomic(summary, summary_csv_text(partition))
        written.append(summary)
        names = {p.name for p in written}
        for stale in out.iterdir():
            if _CLIENT_FILE.fullmatch(stale.name) and stale.name not in names:
                stale.unlink()
    except OSError as exc:
        raise SettingError("out", f"{out}: cannot write ({exc.strerror})") from None
    return written
