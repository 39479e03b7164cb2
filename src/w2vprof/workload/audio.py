"""Real audio: a folder of audio files or a Common Voice style TSV manifest drives the batches.

Files are decoded with soundfile (whatever libsndfile reads: wav, flac, ogg, mp3 with libsndfile >= 1.1),
mixed down to mono and resampled to 16 kHz with torchaudio. Lengths come from the file headers (cheap); audio
is decoded only for the utterances a batch uses, and kept (a profile uses a handful of batches).
"""
from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from w2vprof.errors import BadInput
from w2vprof.workload.base import SAMPLE_RATE, Batch, Workload

__all__ = ["Clip", "AudioWorkload", "list_clips", "read_manifest", "decode_mono_16k", "AUDIO_SUFFIXES"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".aiff", ".aif", ".au")


@dataclass(frozen=True)
class Clip:
    path: Path
    seconds: float
    speaker: str = ""
    sentence: str = ""


def _probe(path: Path) -> Optional[float]:
    """Duration in seconds from the header, or None for an unreadable/empty file."""
    import soundfile

    try:
        info = soundfile.info(str(path))
    except (RuntimeError, OSError, ValueError, TypeError):
        return None
    if info.frames <= 0 or info.samplerate <= 0:
        return None
    return info.frames / info.samplerate


def read_manifest(manifest: Path, clips_dir: Optional[Path] = None) -> list[tuple[Path, str, str]]:
    """(clip path, speaker, sentence) rows of a Common Voice style TSV (client_id, path, sentence columns)."""
    clips_dir = clips_dir or manifest.parent / "clips"
    try:
        with open(manifest, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            missing = {"client_id", "path"} - set(reader.fieldnames or [])
            if missing:
                raise BadInput(f"{manifest}: not a Common Voice style manifest (missing columns: {', '.join(sorted(missing))})")
            return [(clips_dir / row["path"], row["client_id"], row.get("sentence") or "") for row in reader]
    except UnicodeDecodeError:
        raise BadInput(f"{manifest}: not a text TSV manifest") from None
    except OSError as exc:
        raise BadInput(f"{manifest}: cannot read ({exc.strerror})") from None


def list_clips(source: Path, clips_dir: Optional[Path] = None) -> tuple[list[Clip], list[str]]:
    """Every readable clip of a folder (recursively) or a manifest, and the names of the unreadable ones."""
    source = Path(source)
    if source.is_dir():
        entries = [(p, p.parent.name if p.parent != source else "", "") for p in sorted(source.rglob("*"))
                   if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES]
    elif source.is_file():
        entries = read_manifest(source, clips_dir)
    else:
        raise BadInput(f"--audio {source}: no such file or folder")
    clips, skipped = [], []
    for path, speaker, sentence in entries:
        seconds = _probe(path)
        if seconds is None:
            skipped.append(path.name)
        else:
            clips.append(Clip(path, seconds, speaker, sentence))
    if not clips:
        raise BadInput(f"--audio {source}: no readable audio file" + (f" ({len(skipped)} unreadable)" if skipped else ""))
    return clips, skipped


def decode_mono_16k(path: Path) -> "torch.Tensor":  # noqa: F821
    """Decode, average the channels, resample to 16 kHz: a float32 tensor of samples."""
    import soundfile
    import torch
    import torchaudio

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = torch.from_numpy(data.mean(axis=1))
    if rate != SAMPLE_RATE:
        mono = torchaudio.functional.resample(mono, rate, SAMPLE_RATE)
    return mono.contiguous()


class AudioWorkload(Workload):
    """Seeded random batches of real utterances, zero-padded to the longest, optionally cropped (fairseq)."""

    def __init__(self, source: Path, clips_dir: Optional[Path] = None, max_seconds: Optional[float] = None) -> None:
        self.source = Path(source)
        self.clips, skipped = list_clips(self.source, clips_dir)
        self.max_seconds = max_seconds
        self.name = f"audio:{self.source.stem if self.source.is_file() else self.source.name}"
        self.warnings: list[str] = []
        if skipped:
            shown = ", ".join(skipped[:10]) + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else "")
            self.warnings.append(f"skipped {len(skipped)} unreadable or empty audio file(s): {shown}")
        self._decoded: dict[Path, "torch.Tensor"] = {}  # noqa: F821

    def _audio(self, clip: Clip):
        if clip.path not in self._decoded:
            self._decoded[clip.path] = decode_mono_16k(clip.path)
        return self._decoded[clip.path]

    def batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        import torch

        rng = random.Random(seed)
        order: list[int] = []
        while True:
            if len(order) < batch_size:  # a fresh shuffled pass over the corpus, like a trainer's epoch
                order.extend(rng.sample(range(len(self.clips)), len(self.clips)))
            picked = [order.pop(0) for _ in range(batch_size)] if len(self.clips) >= batch_size else [
                rng.randrange(len(self.clips)) for _ in range(batch_size)]
            waves = []
            for index in picked:
                wave = self._audio(self.clips[index])
                if self.max_seconds is not None:
                    limit = int(self.max_seconds * SAMPLE_RATE)
                    if wave.numel() > limit:  # random crop, as fairseq's pretraining does
                        start = rng.randrange(wave.numel() - limit + 1)
                        wave = wave[start:start + limit]
                waves.append(wave)
            longest = max(w.numel() for w in waves)
            padded = torch.zeros(batch_size, longest)
            for row, wave in enumerate(waves):
                padded[row, : wave.numel()] = wave
            yield Batch(padded, torch.tensor([w.numel() for w in waves], dtype=torch.long))
