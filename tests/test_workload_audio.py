"""Real audio workloads: decoding, mixdown, resampling, batching, padding, skipped files, length statistics.

Every file is generated here with numpy + soundfile (no espeak, no downloads).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from w2vprof.errors import BadInput, SettingError
from w2vprof.workload import SAMPLE_RATE, length_stats, make_workload, workload_name
from w2vprof.workload.audio import AudioWorkload, load_audio, probe_audio


def tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    wave = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


def noise(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(round(seconds * rate)))).astype(np.float32)


def write(path: Path, wave: np.ndarray, rate: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, rate)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def dominant_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize(
    "rate, seconds, channels, suffix, expected",
    [
        (8_000, 1.5, 1, "wav", 24_000),  # 12000 frames * 16000 / 8000 = 24000
        (22_050, 0.7, 1, "flac", 11_200),  # 15435 frames * 16000 / 22050 = 11200
        (44_100, 1.23, 2, "wav", 19_680),  # 54243 frames * 16000 / 44100 = 19680
        (44_100, 0.5, 2, "flac", 8_000),  # 22050 frames * 16000 / 44100 = 8000
        (16_000, 2.0, 1, "wav", 32_000),  # no resampling
    ],
)
def test_decode_resamples_to_16k_mono_with_exact_length(tmp_path, rate, seconds, channels, suffix, expected):
    path = write(tmp_path / f"x.{suffix}", tone(seconds, rate, channels=channels), rate)
    info = probe_audio(path)
    assert (info.sample_rate, info.channels) == (rate, channels)
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - expected) <= 1
    # The tone survives resampling and mixdown at its own pitch (FFT bin width 16000 / n < 1 Hz).
    assert abs(dominant_hz(wave, SAMPLE_RATE) - 440.0) < 1.0
    assert 0.45 < float(np.abs(wave).max()) < 0.55


def test_stereo_is_averaged_to_mono(tmp_path):
    left = noise(1.0, SAMPLE_RATE, seed=1)
    path = write(tmp_path / "st.wav", np.stack([left, np.zeros_like(left)], axis=1), SAMPLE_RATE)
    # 16-bit PCM quantises each channel to 1/32768; the average of (x, 0) is x / 2.
    assert np.allclose(load_audio(path), left / 2, atol=1 / 32768)


def make_folder(root: Path, seconds: list[float], rate: int = SAMPLE_RATE) -> Path:
    for i, s in enumerate(seconds):
        write(root / f"u{i}.wav", noise(s, rate, seed=i), rate)
    return root


def test_bad_files_are_skipped_counted_and_named_in_one_warning(tmp_path):
    folder = make_folder(tmp_path / "audio", [1.0, 2.0])
    write(folder / "sub" / "deep.flac", noise(1.0, 22_050), 22_050)
    write(folder / "hi.ogg", noise(0.5, 44_100), 44_100)
    (folder / "notes.wav").write_text("this is not audio\n")
    (folder / "empty.wav").write_bytes(b"")
    truncate(write(folder / "cut.wav", noise(2.0, 8_000), 8_000))
    truncate(write(folder / "cut.flac", noise(2.0, 8_000), 8_000))
    (folder / "README.txt").write_text("not an audio suffix: ignored, not skipped")
    workload = make_workload(5.0, audio=folder)
    assert workload.name == "audio:audio"
    assert sorted(u.path.name for u in workload.utterances) == ["deep.flac", "hi.ogg", "u0.wav", "u1.wav"]
    assert len(workload.warnings) == 1
    warning = workload.warnings[0]
    assert warning.startswith("skipped 4 of 8 audio files")
    for name in ("notes.wav (not a sound file)", "empty.wav (empty file)", "cut.wav (truncated", "cut.flac ("):
        assert name in warning
    # The run goes on: batches come only from the readable files.
    batch = next(workload.batches(4, seed=0))
    assert sorted(batch.lengths.tolist()) == [8_000, 16_000, 16_000, 32_000]


def test_no_readable_file_is_bad_input(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.wav").write_text("text")
    (folder / "b.wav").write_bytes(b"")
    with pytest.raises(BadInput, match=r"no readable audio; skipped 2 of 2 audio files"):
        make_workload(5.0, audio=folder)
    no_audio = tmp_path / "transcripts"
    no_audio.mkdir()
    (no_audio / "a.txt").write_text("no audio here")
    with pytest.raises(BadInput, match="no audio files"):
        make_workload(5.0, audio=no_audio)
    with pytest.raises(BadInput, match="no such file or folder"):
        make_workload(5.0, audio=tmp_path / "missing")


def test_batches_pad_to_longest_with_masks_and_cover_an_epoch(tmp_path):
    seconds = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    folder = make_folder(tmp_path / "a", seconds, rate=8_000)
    workload = AudioWorkload(folder)
    stream = workload.batches(3, seed=7)
    first, second, third = next(stream), next(stream), next(stream)
    # One epoch = every file once: the first two batches hold all six lengths (16000 samples per second).
    epoch = sorted(first.lengths.tolist() + second.lengths.tolist())
    assert epoch == [int(s * 16_000) for s in seconds]
    assert not torch.equal(first.lengths, second.lengths)  # successive batches differ
    for batch in (first, second, third):
        assert batch.waveforms.dtype == torch.float32 and batch.lengths.dtype == torch.int64
        assert batch.waveforms.shape == (3, int(batch.lengths.max()))
        mask = batch.attention_mask()
        assert mask.sum(dim=1).tolist() == batch.lengths.tolist()
        assert torch.all(batch.waveforms[~mask] == 0)
        assert torch.all(batch.waveforms.abs().sum(dim=1) > 0)
    # Seeded: the same seed gives the same batches, another seed another order.
    again = next(AudioWorkload(folder).batches(3, seed=7))
    assert torch.equal(again.waveforms, first.waveforms)
    orders = {tuple(next(workload.batches(3, seed=s)).lengths.tolist()) for s in range(6)}
    assert len(orders) > 1


def test_length_stats_of_one_epoch_are_exact(tmp_path):
    folder = make_folder(tmp_path / "a", [1.0, 2.0, 3.0, 4.0])
    batch = next(AudioWorkload(folder).batches(4, seed=0))
    stats = length_stats([batch])
    assert stats["utt_sec_mean"] == pytest.approx(2.5)  # (1 + 2 + 3 + 4) / 4
    assert stats["utt_sec_median"] == pytest.approx(2.0)  # torch: the lower of the two middle values
    assert stats["utt_sec_p90"] == pytest.approx(3.7)  # linear: position 0.9 * 3 = 2.7 -> 3 + 0.7 * (4 - 3)
    assert stats["utt_sec_max"] == pytest.approx(4.0)
    assert stats["padding_fraction"] == pytest.approx(6 / 16)  # 4 x 4 s padded, 10 s real


def test_max_seconds_crops_a_random_window_like_fairseq(tmp_path):
    folder = tmp_path / "ramp"
    # A ramp makes every sample unique, so a crop can be located in its source.
    ramp = (np.arange(4 * SAMPLE_RATE) / (4 * SAMPLE_RATE)).astype(np.float32) * 0.9
    folder.mkdir()
    sf.write(str(folder / "long.wav"), ramp, SAMPLE_RATE, subtype="FLOAT")  # float: samples stay unique
    write(folder / "short.wav", noise(1.0, SAMPLE_RATE), SAMPLE_RATE)
    workload = make_workload(5.0, audio=folder, max_seconds=2.5)
    starts = set()
    for batch in [b for b, _ in zip(workload.batches(2, seed=3), range(6))]:
        assert sorted(batch.lengths.tolist()) == [16_000, 40_000]  # 1 s untouched, 4 s cropped to 2.5 s
        row = batch.waveforms[int(torch.argmax(batch.lengths))].numpy()
        start = int(np.argmin(np.abs(ramp - row[0])))
        assert np.array_equal(row, ramp[start : start + 40_000])
        starts.add(start)
    assert len(starts) > 1  # a new random window each time
    assert length_stats([next(workload.batches(2, 0))])["utt_sec_max"] == pytest.approx(2.5)


def write_manifest(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["client_id\tpath\tsentence\tup_votes"] + [f"{c}\t{p}\t{s}\t2" for c, p, s in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_common_voice_manifest_resolves_clips_and_counts_missing(tmp_path):
    cv = tmp_path / "it"
    write(cv / "clips" / "a.flac", noise(1.0, 48_000), 48_000)
    write(cv / "clips" / "b.wav", noise(2.0, 44_100), 44_100)
    manifest = write_manifest(
        cv / "validated.tsv",
        [("spk1", "a.flac", 'He said "hi"'), ("spk2", "b.wav", "x"), ("spk2", "gone.mp3", "y")],
    )
    workload = make_workload(5.0, audio=manifest)
    assert workload.name == "audio:validated.tsv" == workload_name(manifest)
    assert workload.warnings == ["skipped 1 of 3 audio files (unreadable, empty or corrupt): gone.mp3 (missing)"]
    assert sorted(next(workload.batches(2, 0)).lengths.tolist()) == [16_000, 32_000]
    # --clips-dir: the clips live elsewhere.
    elsewhere = write_manifest(tmp_path / "lists" / "train.tsv", [("s", "a.flac", "z")])
    assert len(make_workload(5.0, audio=elsewhere, clips_dir=cv / "clips").utterances) == 1
    with pytest.raises(SettingError, match=r"^clips_dir .* does not exist \(the folder of .*train.tsv's clips\)"):
        make_workload(5.0, audio=elsewhere)
    bad = tmp_path / "bad.tsv"
    bad.write_text("client_id\tfile\n1\ta.wav\n")
    with pytest.raises(BadInput, match="no 'path' column"):
        make_workload(5.0, audio=bad)


def test_a_file_that_fails_late_is_skipped_and_added_to_the_warning(tmp_path):
    folder = make_folder(tmp_path / "a", [1.0, 2.0])
    workload = AudioWorkload(folder)
    (folder / "u0.wav").write_bytes(b"gone bad after the probe")
    batch = next(workload.batches(2, seed=0))
    assert batch.lengths.tolist() == [32_000, 32_000]  # the survivor fills the batch
    assert workload.warnings == ["skipped 1 of 2 audio files (unreadable, empty or corrupt): u0.wav (not a sound file)"]


def test_make_workload_rejects_contradictions(tmp_path):
    with pytest.raises(BadInput, match="cannot be combined"):
        make_workload(5.0, audio=tmp_path, length_dist="normal:5,1")
    with pytest.raises(SettingError, match="^clips_dir needs audio MANIFEST.tsv"):
        make_workload(5.0, clips_dir=tmp_path)
    with pytest.raises(
        SettingError, match="^max_seconds 2 is shorter than seconds 5: for fixed-length batches set seconds"
    ):
        make_workload(5.0, max_seconds=2.0)
    with pytest.raises(SettingError, match="^max_seconds must be a positive"):
        make_workload(5.0, length_dist="normal:5,1", max_seconds=0)
    assert make_workload(5.0, max_seconds=8.0).name == "synthetic"
