"""Real audio as a workload: a folder of audio files, one file, or a Common Voice style TSV manifest.

Every file is probed up front (header, plus one short read at the end to catch truncation); audio is decoded
only when a batch needs it and kept in a bounded cache. Decoded audio is mixed down to mono and resampled
to 16 kHz with torchaudio. Batches are random (seeded) epochs of utterances, as a trainer draws them,
zero-padded to the longest, with an optional fairseq-style random crop to `max_seconds`.
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Union

from w2vprof.errors import BadInput, SettingError
from w2vprof.workload.base import SAMPLE_RATE, Batch, Workload, collate

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "AUDIO_SUFFIXES",
    "AudioError",
    "AudioInfo",
    "probe_audio",
    "load_audio",
    "find_audio_files",
    "skipped_warning",
    "AudioWorkload",
]

#: What a folder scan picks up: the containers libsndfile reads. Other files (transcripts, TSVs) are ignored.
AUDIO_SUFFIXES = frozenset(
    {
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".snd",
        ".w64",
        ".rf64",
        ".caf",
    }
)
#: How many skipped files a warning names before "and N more".
WARNING_NAMES = 10
_TAIL_FRAMES = 1024


class AudioError(Exception):
    """A file we cannot use; the message is the reason shown in the skipped-files warning."""


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    frames: int  # at the file's own sample rate
    sample_rate: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def _wav_truncation(path: Path) -> Optional[str]:
    """For RIFF/WAVE: the reason if the data chunk is shorter than its header says (libsndfile hides it)."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset = 12
    while offset + 8 <= len(head):
        chunk_id, size = head[offset : offset + 4], struct.unpack("<I", head[offset + 4 : offset + 8])[0]
        if chunk_id == b"data":
            present = os.path.getsize(path) - (offset + 8)
            # 0 and 0xFFFFFFFF are what streaming writers leave when they cannot seek back to fill the size.
            if size not in (0, 0xFFFFFFFF) and present < size:
                return f"truncated: {present} of {size} data bytes"
            return None
        offset += 8 + size + (size & 1)  # chunks are word-aligned
    return None


def probe_audio(path: Union[str, Path]) -> AudioInfo:
    """Header facts of one file; AudioError(reason) if it is missing, empty, not audio, or truncated."""
    import soundfile as sf

    path = Path(path)
    try:
        if os.path.getsize(path) == 0:
            raise AudioError("empty file")
        truncated = _wav_truncation(path)
        if truncated:
            raise AudioError(truncated)
        with sf.SoundFile(str(path)) as handle:
            frames, rate, channels = handle.frames, handle.samplerate, handle.channels
            if frames <= 0:
                raise AudioError("no audio samples")
            if handle.seekable():
                # A cut-off FLAC/MP3 still reports its full length in the header; reading its end exposes it.
                handle.seek(max(frames - _TAIL_FRAMES, 0))
                wanted = min(_TAIL_FRAMES, frames)
                if len(handle.read(wanted, dtype="float32")) < wanted:
                    raise AudioError("truncated: ends before its header's length")
    except FileNotFoundError:
        raise AudioError("missing") from None
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(_short_reason(exc)) from None
    return AudioInfo(path=path, frames=int(frames), sample_rate=int(rate), channels=int(channels))


def _short_reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    if "Format not recognised" in text or "unknown format" in text.lower():
        return "not a sound file"
    if "psf_fseek" in text or "lost sync" in text:
        return "corrupt or truncated"
    return f"unreadable: {text[:80]}"


def load_audio(path: Union[str, Path], sample_rate: int = SAMPLE_RATE, resamplers: Optional[dict] = None) -> np.ndarray:
    """Decode one file to mono float32 at `sample_rate` (channels averaged, torchaudio sinc resampling).

    A file of n frames at rate r comes back with ceil(n * sample_rate / r) samples. `resamplers`, a dict the
    caller keeps, holds one torchaudio Resample per source rate, so its sinc kernel is built once per rate.
    """
    import numpy as np
    import soundfile as sf

    try:
        data, rate = sf.read(str(Path(path)), dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise AudioError("missing") from None
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(_short_reason(exc)) from None
    if data.shape[0] == 0:
        raise AudioError("no audio samples")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if rate != sample_rate:
        import torch
        import torchaudio

        resamplers = {} if resamplers is None else resamplers
        if rate not in resamplers:
            resamplers[rate] = torchaudio.transforms.Resample(int(rate), sample_rate)
        with torch.no_grad():
            mono = resamplers[rate](torch.from_numpy(np.ascontiguousarray(mono))).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def find_audio_files(folder: Union[str, Path]) -> list[Path]:
    """Audio files under `folder` (recursively, sorted), by suffix; hidden files are left out."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.rglob("*")
        # Dot files are editor/OS litter (macOS "._x.wav" resource forks look like audio but are not).
        if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def skipped_warning(skipped: list[tuple[str, str]], total: int, what: str = "audio files") -> str:
    """One line for the user: how many of `total` were skipped, and which (name (reason), ...)."""
    named = ", ".join(f"{name} ({reason})" for name, reason in skipped[:WARNING_NAMES])
    more = f" and {len(skipped) - WARNING_NAMES} more" if len(skipped) > WARNING_NAMES else ""
    return f"skipped {len(skipped)} of {total} {what} (unreadable, empty or corrupt): {named}{more}"


def _display_name(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


class AudioWorkload(Workload):
    """Batches of real utterances from a folder, a single file, or a TSV manifest (see module docstring)."""

    def __init__(
        self,
        source: Union[str, Path],
        clips_dir: Optional[Union[str, Path]] = None,
        max_seconds: Optional[float] = None,
        cache_bytes: int = 256 << 20,
    ) -> None:
        source = Path(source)
        self.source = source
        self.max_seconds = float(max_seconds) if max_seconds is not None else None
        self.name = f"audio:{source.resolve().name}"
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_bytes = int(cache_bytes)
        self._cached = 0
        self._resamplers: dict = {}

        if source.is_dir():
            if clips_dir is not None:
                raise SettingError("clips_dir", "applies to a TSV manifest, not to a folder of audio files")
            root, candidates = source, find_audio_files(source)
            if not candidates:
                raise BadInput(f"{source}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in this folder")
        elif source.is_file() and source.suffix.lower() in (".tsv", ".txt"):
            from w2vprof.workload.manifest import read_manifest

            manifest = read_manifest(source, clips_dir)
            root, candidates = manifest.clips_dir, [manifest.clip_path(row) for row in manifest.rows]
            if not candidates:
                raise BadInput(f"{source}: the manifest lists no clips")
            if not manifest.clips_dir.is_dir():
                raise SettingError("clips_dir", f"{manifest.clips_dir} does not exist (the folder of {source}'s clips)")
        elif source.is_file():
            root, candidates = source.parent, [source]
        else:
            raise SettingError("audio", f"{source}: no such file or folder")

        self.utterances: list[AudioInfo] = []
        self.skipped: list[tuple[str, str]] = []  # (name relative to the folder, reason)
        self._root = root
        for path in candidates:
            try:
                self.utterances.append(probe_audio(path))
            except AudioError as exc:
                self.skipped.append((_display_name(path, root), str(exc)))
        self.total_files = len(candidates)
        if not self.utterances:
            raise SettingError(
                "audio", f"{source}: no readable audio; " + skipped_warning(self.skipped, self.total_files)
            )
        self._usable = [True] * len(self.utterances)

    @property
    def warnings(self) -> list[str]:
        """One line naming every skipped file (also those that failed later, while decoding a batch)."""
        return [skipped_warning(self.skipped, self.total_files)] if self.skipped else []

    @property
    def seconds(self) -> list[float]:
        """Header length of every usable utterance, seconds (before any --max-seconds crop)."""
        return [u.seconds for u, ok in zip(self.utterances, self._usable) if ok]

    def load(self, index: int) -> np.ndarray:
        """Utterance `index` as mono float32 16 kHz, through a bounded LRU cache of decoded audio."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        wave = load_audio(self.utterances[index].path, resamplers=self._resamplers)
        self._cache[index] = wave
        self._cached += wave.nbytes
        while self._cached > self._cache_bytes and len(self._cache) > 1:
            _, evicted = self._cache.popitem(last=False)
            self._cached -= evicted.nbytes
        return wave

    def batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        """Endless seeded batches: shuffled epochs of the corpus, `batch_size` utterances at a time."""
        import numpy as np

        rng = np.random.default_rng(seed)
        crop = int(round(self.max_seconds * SAMPLE_RATE)) if self.max_seconds else None
        order: list[int] = []
        while True:
            waves: list[np.ndarray] = []
            while len(waves) < batch_size:
                if not order:
                    usable = [i for i, ok in enumerate(self._usable) if ok]
                    if not usable:
                        raise SettingError(
                            "audio",
                            f"{self.source}: no readable audio; " + skipped_warning(self.skipped, self.total_files),
                        )
                    order = [usable[i] for i in rng.permutation(len(usable))]
                index = order.pop()
                if not self._usable[index]:
                    continue
                try:
                    wave = self.load(index)
                except AudioError as exc:
                    # Passed the probe but failed to decode: skip it for the rest of the run, like the others.
                    self._usable[index] = False
                    self.skipped.append((_display_name(self.utterances[index].path, self._root), str(exc)))
                    continue
                if crop is not None and len(wave) > crop:
                    # fairseq RawAudioDataset.crop_to_max_size: a uniformly random window of the maximum size.
                    start = int(rng.integers(0, len(wave) - crop + 1))
                    wave = wave[start : start + crop]
                waves.append(wave)
            yield collate(waves)
