"""Generate a small speech-like corpus in Common Voice layout (validated.tsv + clips/), for tests and demos.

With espeak-ng on PATH each speaker is an espeak voice variant with its own pitch and rate, reading random
sentences (real, intelligible speech at 22.05 kHz). Without it, numpy additive synthesis makes voiced
"speech": a per-speaker pitch contour, harmonics shaped by formants that move every syllable, and pauses
between words (16 kHz). Either way utterance lengths follow the sentence lengths, so they vary like read
speech (a few seconds, right-skewed), and speakers are distinct, so speaker-disjoint partitions mean something.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

from w2vprof.errors import BadInput
from w2vprof.files import write_text_atomic
from w2vprof.workload.manifest import manifest_text

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["Corpus", "ENGINES", "CV_COLUMNS", "generate_corpus", "espeak_available"]

ENGINES = ("auto", "espeak", "synthetic")
CV_COLUMNS = [
    "client_id",
    "path",
    "sentence",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accents",
    "locale",
    "segment",
]
_WORDS = [
    "the",
    "a",
    "river",
    "quiet",
    "morning",
    "station",
    "people",
    "often",
    "bring",
    "small",
    "green",
    "boxes",
    "under",
    "every",
    "bridge",
    "while",
    "children",
    "learn",
    "numbers",
    "after",
    "school",
    "seven",
    "thousand",
    "birds",
    "fly",
    "south",
    "before",
    "winter",
    "comes",
    "again",
    "our",
    "neighbour",
    "painted",
    "his",
    "door",
    "bright",
    "yellow",
    "last",
    "summer",
    "and",
    "nobody",
    "could",
    "sleep",
    "through",
    "the",
    "noise",
    "trains",
    "arrive",
    "late",
    "when",
    "snow",
    "covers",
    "northern",
    "hills",
    "doctors",
    "recommend",
    "walking",
    "slowly",
    "each",
    "evening",
]
_ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")


@dataclass
class Corpus:
    root: Path
    manifest: Path  # root / validated.tsv
    clips_dir: Path  # root / clips
    engine: str  # espeak | synthetic
    speakers: list[str] = field(default_factory=list)  # client_id of each speaker
    utterances: int = 0
    seconds: float = 0.0  # total speech, seconds


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def generate_corpus(
    out_dir: Union[str, Path],
    speakers: int,
    utterances_per_speaker: int,
    seed: int = 0,
    engine: str = "auto",
    audio_format: str = "wav",
    words: tuple[int, int] = (4, 18),
) -> Corpus:
    """Write `speakers` x `utterances_per_speaker` clips and validated.tsv under `out_dir`; return what was made.

    engine: auto (espeak-ng when installed, else synthetic) | espeak | synthetic.
    audio_format: any container soundfile writes: wav, flac, ogg, mp3 (the suffix of every clip).
    words: (fewest, most) words per sentence; each word lasts about 0.3-0.4 s.
    """
    import numpy as np
    import soundfile as sf

    engine = _chosen_engine(engine)
    if speakers < 1 or utterances_per_speaker < 1:
        raise BadInput("a corpus needs at least one speaker and one utterance per speaker")
    root = Path(out_dir)
    clips = root / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    corpus = Corpus(root=root, manifest=root / "validated.tsv", clips_dir=clips, engine=engine)
    rows = []
    for s in range(speakers):
        # Common Voice client ids are 128 hex digits; derived from the seed so corpora are reproducible.
        client_id = hashlib.sha512(f"w2vprof-speaker-{seed}-{s}".encode()).hexdigest()
        voice = _Voice.random(rng, s)
        corpus.speakers.append(client_id)
        for u in range(utterances_per_speaker):
            sentence = " ".join(rng.choice(_WORDS, size=int(rng.integers(words[0], words[1] + 1)))).capitalize()
            wave, rate = _speak(sentence, voice, engine, rng)
            name = f"common_voice_xx_{seed}_{s:04d}_{u:03d}.{audio_format}"
            sf.write(str(clips / name), wave, rate)
            corpus.utterances += 1
            corpus.seconds += len(wave) / rate
            rows.append(_manifest_row(client_id, name, sentence, voice))
    write_text_atomic(corpus.manifest, manifest_text(CV_COLUMNS, rows))
    return corpus


def _chosen_engine(engine: str) -> str:
    """espeak or synthetic: `auto` is espeak-ng when installed."""
    if engine not in ENGINES:
        raise BadInput(f"unknown corpus engine {engine!r}; choose from {', '.join(ENGINES)}")
    if engine == "auto":
        return "espeak" if espeak_available() else "synthetic"
    if engine == "espeak" and not espeak_available():
        raise BadInput("espeak-ng is not installed (apt-get install espeak-ng), use engine='synthetic'")
    return engine


def _speak(sentence: str, voice: _Voice, engine: str, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """The sentence read by the voice: (samples, sample rate)."""
    if engine == "espeak":
        return _espeak(sentence, voice)
    return _synthesize(sentence, voice, rng), 16_000


def _manifest_row(client_id: str, name: str, sentence: str, voice: _Voice) -> dict[str, str]:
    """One validated.tsv line, as Common Voice writes it (every clip validated: 2 up votes, none down)."""
    return {
        "client_id": client_id,
        "path": name,
        "sentence": sentence + ".",
        "up_votes": "2",
        "down_votes": "0",
        "age": "",
        "gender": "female" if voice.female else "male",
        "accents": "",
        "locale": "xx",
        "segment": "",
    }


@dataclass
class _Voice:
    f0: float  # Hz, speaker's mean pitch
    rate: float  # words per minute (espeak) / speed factor (synthetic)
    female: bool
    variant: str
    pitch: int  # espeak -p 0..99

    @classmethod
    def random(cls, rng: np.random.Generator, index: int) -> _Voice:
        variant = _ESPEAK_VARIANTS[index % len(_ESPEAK_VARIANTS)]
        female = variant.startswith("f")
        f0 = float(rng.uniform(170, 250) if female else rng.uniform(90, 150))
        return cls(
            f0=f0, rate=float(rng.uniform(130, 185)), female=female, variant=variant, pitch=int(rng.integers(25, 75))
        )


def _espeak(sentence: str, voice: _Voice) -> tuple[np.ndarray, int]:
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "u.wav"
        subprocess.run(
            [
                "espeak-ng",
                "-v",
                f"en-us+{voice.variant}",
                "-p",
                str(voice.pitch),
                "-s",
                str(int(voice.rate)),
                "-w",
                str(target),
                sentence,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wave, rate = sf.read(str(target), dtype="float32")
    return wave, int(rate)


# Vowel formants (F1, F2, F3) in Hz: the syllable nuclei the synthetic voice moves between.
_VOWELS = (
    (730, 1090, 2440),
    (270, 2290, 3010),
    (530, 1840, 2480),
    (570, 840, 2410),
    (300, 870, 2240),
    (660, 1720, 2410),
    (490, 1350, 1690),
)


def _synthesize(sentence: str, voice: _Voice, rng: np.random.Generator, rate: int = 16_000) -> np.ndarray:
    """Voiced speech-like audio: harmonics of a wandering f0 under moving formant peaks, words and pauses."""
    import numpy as np

    speed = voice.rate / 155.0
    pieces = [np.zeros(int(rate * rng.uniform(0.1, 0.3)), np.float32)]
    for word in sentence.split():
        syllables = max(1, round(len(word) / 3))
        for _ in range(syllables):
            n = int(rate * rng.uniform(0.12, 0.22) / speed)
            t = np.arange(n) / rate
            # Pitch: speaker mean, slow intonation and jitter; phase from the integral of f0.
            f0 = voice.f0 * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(1, 3) * t + rng.uniform(0, 6.3)))
            phase = 2 * np.pi * np.cumsum(f0) / rate
            start, end = np.array(_VOWELS[rng.integers(len(_VOWELS))]), np.array(_VOWELS[rng.integers(len(_VOWELS))])
            scale = 1.15 if voice.female else 1.0
            wave = np.zeros(n)
            for k in range(1, int(4000 / voice.f0)):
                frac = t / max(t[-1], 1e-9)
                gain = np.zeros(n)
                for j in range(3):
                    formant = scale * (start[j] + (end[j] - start[j]) * frac)
                    gain += np.exp(-0.5 * ((k * f0 - formant) / (80 + 40 * j)) ** 2) / (j + 1)
                wave += gain * np.sin(k * phase) / np.sqrt(k)
            envelope = np.sin(np.pi * np.arange(n) / n) ** 0.5
            pieces.append((envelope * wave).astype(np.float32))
        pieces.append(np.zeros(int(rate * rng.uniform(0.04, 0.15) / speed), np.float32))
    pieces.append(np.zeros(int(rate * rng.uniform(0.1, 0.3)), np.float32))
    audio = np.concatenate(pieces)
    audio += rng.normal(0, 0.003, audio.size).astype(np.float32)  # room noise: silence is never digital zero
    return (0.3 * audio / max(float(np.abs(audio).max()), 1e-9)).astype(np.float32)
