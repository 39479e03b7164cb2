"""What one client trains on and what the server validates on: utterances in memory, cut into epoch batches.

Partitions are what `w2vprof partition` writes: one Common Voice style manifest per client (client_000.tsv, ...,
speaker-disjoint), clips resolved against --clips-dir (default: a clips/ folder beside the manifests or one
level up). A client entry may also be a folder of audio files. The held-out set is --validation (a manifest or
an audio folder), else a heldout.tsv / heldout/ in the partitions folder.

`--partitions synthetic` generates such a layout first (workload.corpus + workload.partition): a speech-like
corpus with one speaker per client, split speaker-disjoint, and a held-out corpus of speakers no client has.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from w2vprof.errors import BadInput, SettingError
from w2vprof.workload import Batch, collate

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from w2vprof.fl.settings import FlSettings

__all__ = [
    "HELD_OUT_NAMES",
    "SyntheticLayout",
    "prepare_synthetic",
    "client_entries",
    "held_out_entry",
    "load_utterances",
    "client_utterances",
    "validation_source",
    "validation_utterances",
    "epoch_batches",
]

HELD_OUT_NAMES = ("heldout", "held_out", "held-out", "validation", "valid", "dev", "test")
#: words per generated sentence (about 0.3-0.4 s a word): 1-3 s utterances keep a CPU round affordable
SYNTHETIC_WORDS = (3, 8)


def _is_partition_entry(path: Path) -> bool:
    return path.is_dir() or path.suffix == ".tsv"


def client_entries(partitions: Path) -> list[Path]:
    """Per-client manifests or folders in `partitions`, sorted by name: index = partition id."""
    partitions = Path(partitions)
    if not partitions.is_dir():
        raise SettingError("partitions", f"{partitions}: no such folder (or use synthetic to generate one)")
    entries = sorted(
        p
        for p in partitions.iterdir()
        if _is_partition_entry(p)
        and p.stem.lower() not in HELD_OUT_NAMES
        and not p.name.startswith(".")
        and p.name != "clips"
    )
    if not entries:
        raise SettingError("partitions", f"{partitions}: no per-client .tsv manifests or folders in it")
    return entries


def held_out_entry(partitions: Path) -> Optional[Path]:
    for name in HELD_OUT_NAMES:
        for candidate in (Path(partitions) / f"{name}.tsv", Path(partitions) / name):
            if candidate.exists():
                return candidate
    return None


def _clip_paths(manifest: Path, clips_dir: str) -> list[Path]:
    from w2vprof.workload.manifest import read_manifest

    # The given folder first, then where `w2vprof partition` and Common Voice put clips: the first folder that
    # holds the manifest's first clip wins (a partitions folder sits beside or inside the corpus).
    candidates = ([Path(clips_dir)] if clips_dir else []) + [
        manifest.parent / "clips",
        manifest.parent.parent / "clips",
    ]
    data = read_manifest(manifest)
    if not data.rows:
        raise BadInput(f"{manifest}: no utterances in it")
    first = Path(data.rows[0]["path"])
    clips = next((c for c in candidates if (c / first).is_file()), candidates[0])
    paths = [p if p.is_absolute() else clips / p for p in (Path(row["path"]) for row in data.rows)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SettingError(
            "clips_dir",
            f"must name the folder of {manifest}'s clips: {len(missing)} of {len(paths)} clips not found "
            f"(first: {missing[0]})",
        )
    return paths


def load_utterances(entry: Path, clips_dir: str = "", limit: Optional[int] = None) -> list[torch.Tensor]:
    """Decode (mono, 16 kHz) the utterances of a manifest or an audio folder: the first `limit`, in order."""
    import torch

    from w2vprof.workload.audio import AudioError, find_audio_files, load_audio

    entry = Path(entry)
    if entry.is_dir():
        paths = find_audio_files(entry)
    elif entry.is_file():
        paths = _clip_paths(entry, clips_dir)
    else:
        raise BadInput(f"partition {entry}: no such file or folder")
    if not paths:
        raise BadInput(f"partition {entry}: no utterances in it")
    utterances = []
    for path in paths[:limit]:
        try:
            utterances.append(torch.from_numpy(load_audio(path)))
        except AudioError as exc:
            # A client cannot skip silently: the example count would change without anyone knowing.
            raise BadInput(f"{path}: {exc}") from None
    return utterances


def client_utterances(
    settings: FlSettings, partition_id: Optional[int], partition_path: Optional[str], clips_dir: Optional[str]
) -> list[torch.Tensor]:
    """A client's partition: its own path (a deployed SuperNode), or entry `partition_id` of `partitions`."""
    clips = clips_dir or settings.clips_dir
    if partition_path:
        return load_utterances(Path(partition_path), clips)
    if partition_id is None:
        raise BadInput("this SuperNode has neither partition-path nor partition-id in its node config")
    entries = client_entries(Path(settings.partitions))
    if partition_id >= len(entries):
        raise BadInput(f"partition {partition_id} asked for, but {settings.partitions} holds {len(entries)} partitions")
    return load_utterances(entries[partition_id], clips)


def validation_source(settings: FlSettings) -> Path:
    if settings.validation:
        return Path(settings.validation)
    entry = held_out_entry(Path(settings.partitions)) if settings.partitions else None
    if entry is None:
        raise SettingError(
            "validation", f"is needed: a held-out manifest or audio folder, or a heldout.tsv in {settings.partitions}"
        )
    return entry


def validation_utterances(settings: FlSettings) -> list[torch.Tensor]:
    """The held-out set scored each round (its first `validation_utterances` utterances)."""
    return load_utterances(validation_source(settings), settings.clips_dir, limit=settings.validation_utterances)


def epoch_batches(
    utterances: list[torch.Tensor], batch_size: int, max_samples: int, seed: int, shuffle: bool = True
) -> list[Batch]:
    """One pass over `utterances` in batches, longer ones cropped to a random `max_samples` window.

    Utterances are shuffled with `seed` (the round and the partition make it), so a client sees a new order each
    round; the last batch may be smaller.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(utterances), generator=generator).tolist() if shuffle else list(range(len(utterances)))
    batches = []
    for start in range(0, len(order), batch_size):
        chosen = []
        for index in order[start : start + batch_size]:
            wave = utterances[index]
            if wave.shape[0] > max_samples:
                offset = int(torch.randint(0, wave.shape[0] - max_samples + 1, (1,), generator=generator))
                wave = wave[offset : offset + max_samples]
            chosen.append(wave)
        batches.append(collate(chosen))
    return batches


class SyntheticLayout:
    """Where prepare_synthetic puts things under the run's output folder."""

    def __init__(self, out_dir: Path) -> None:
        self.corpus = Path(out_dir) / "corpus"
        self.heldout_corpus = Path(out_dir) / "heldout-corpus"
        self.partitions = Path(out_dir) / "partitions"


def prepare_synthetic(settings: FlSettings, engine: str = "auto") -> FlSettings:
    """Generate a corpus with one speaker per client, split it speaker-disjoint, and a held-out corpus.

    Returns the settings pointing at them. engine: auto (espeak-ng when installed) | espeak | synthetic.
    """
    from w2vprof.workload.corpus import generate_corpus
    from w2vprof.workload.partition import partition_manifest, write_partition

    layout = SyntheticLayout(Path(settings.out_dir))
    corpus = generate_corpus(
        layout.corpus,
        speakers=settings.clients,
        utterances_per_speaker=settings.utterances_per_client,
        seed=settings.seed,
        engine=engine,
        words=SYNTHETIC_WORDS,
    )
    # Corpus speakers derive from the seed: another seed gives voices no client has.
    heldout_speakers = max(2, -(-settings.validation_utterances // 4))
    heldout = generate_corpus(
        layout.heldout_corpus,
        speakers=heldout_speakers,
        utterances_per_speaker=4,
        seed=settings.seed + 1_000_003,
        engine=engine,
        words=SYNTHETIC_WORDS,
    )
    write_partition(partition_manifest(corpus.manifest, settings.clients, seed=settings.seed), layout.partitions)
    return settings.replace(
        partitions=str(layout.partitions), clips_dir=str(corpus.clips_dir), validation=str(heldout.manifest)
    )
