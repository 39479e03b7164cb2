"""generate_corpus: a Common Voice style folder of speech-like audio (numpy synthesis; espeak-ng if present)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from w2vprof.errors import BadInput
from w2vprof.workload import length_stats, make_workload
from w2vprof.workload.corpus import CV_COLUMNS, espeak_available, generate_corpus
from w2vprof.workload.manifest import read_manifest
from w2vprof.workload.partition import partition_manifest


def test_synthetic_corpus_is_common_voice_shaped_and_speech_like(tmp_path):
    corpus = generate_corpus(tmp_path / "cv", speakers=3, utterances_per_speaker=2, seed=5, engine="synthetic")
    assert corpus.engine == "synthetic" and corpus.utterances == 6 and len(set(corpus.speakers)) == 3
    manifest = read_manifest(corpus.manifest)
    assert manifest.columns == CV_COLUMNS and len(manifest.rows) == 6
    assert all(len(row["client_id"]) == 128 and row["sentence"] for row in manifest.rows)
    lengths = []
    for row in manifest.rows:
        wave, rate = sf.read(str(manifest.clip_path(row)))
        assert rate == 16_000
        lengths.append(len(wave) / rate)
        # Voiced: most energy below 1 kHz, and pauses: a good share of 10 ms frames far quieter than the loudest.
        spectrum = np.abs(np.fft.rfft(wave)) ** 2
        freqs = np.fft.rfftfreq(len(wave), 1 / rate)
        assert spectrum[(freqs > 70) & (freqs < 1000)].sum() > 0.5 * spectrum.sum()
        frames = wave[: len(wave) // 160 * 160].reshape(-1, 160)
        energy = (frames**2).mean(axis=1)
        assert (energy < 0.01 * energy.max()).mean() > 0.05
    assert min(lengths) > 1.0 and max(lengths) < 12.0
    assert corpus.seconds == pytest.approx(sum(lengths))
    # Reproducible from the seed.
    again = generate_corpus(tmp_path / "again", 3, 2, seed=5, engine="synthetic")
    assert again.speakers == corpus.speakers
    assert again.manifest.read_text() == corpus.manifest.read_text()


def test_corpus_feeds_the_audio_workload_and_partition(tmp_path):
    corpus = generate_corpus(
        tmp_path / "cv", speakers=4, utterances_per_speaker=2, seed=0, engine="synthetic", words=(3, 6)
    )
    workload = make_workload(5.0, audio=corpus.manifest)
    assert workload.warnings == [] and len(workload.utterances) == 8
    stats = length_stats([b for b, _ in zip(workload.batches(4, seed=0), range(2))])
    assert stats["utt_sec_mean"] == pytest.approx(corpus.seconds / 8, rel=1e-6)  # two batches = one epoch
    split = partition_manifest(corpus.manifest, 2)
    assert sorted(s for c in split.clients for s in c.speakers) == sorted(corpus.speakers)


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed")
def test_espeak_corpus(tmp_path):
    corpus = generate_corpus(
        tmp_path / "cv", speakers=2, utterances_per_speaker=1, engine="espeak", audio_format="flac"
    )
    assert corpus.engine == "espeak"
    clips = sorted(corpus.clips_dir.glob("*.flac"))
    assert len(clips) == 2 and all(sf.info(str(c)).samplerate == 22_050 for c in clips)


def test_bad_arguments(tmp_path):
    with pytest.raises(BadInput, match="unknown corpus engine"):
        generate_corpus(tmp_path, 1, 1, engine="festival")
    with pytest.raises(BadInput, match="at least one speaker"):
        generate_corpus(tmp_path, 0, 1, engine="synthetic")
