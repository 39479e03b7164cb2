"""w2vprof partition: speaker-disjoint client manifests with about equal speech (10 and 100 clients)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import run_cli_in_process
from w2vprof.errors import BadInput
from w2vprof.workload.manifest import read_manifest
from w2vprof.workload.partition import assign_speakers, partition_manifest, write_partition


def balanced_speakers(count: int, seed: int = 0) -> dict[str, float]:
    """Speakers with 5-15 utterances of 2-8 s each: a Common Voice like, balanced manifest."""
    rng = np.random.default_rng(seed)
    return {f"spk{i:04d}": float(rng.uniform(2, 8, int(rng.integers(5, 16))).sum()) for i in range(count)}


@pytest.mark.parametrize("speakers, clients", [(300, 10), (1500, 100)])
def test_greedy_assignment_is_disjoint_complete_and_within_10_percent(speakers, clients):
    speech = balanced_speakers(speakers)
    assigned = assign_speakers(speech, clients, seed=0)
    assert len(assigned) == clients
    flat = [s for client in assigned for s in client]
    assert sorted(flat) == sorted(speech)  # every speaker exactly once: no speaker in two clients
    totals = np.array([sum(speech[s] for s in client) for client in assigned])
    assert np.all(np.abs(totals - totals.mean()) <= 0.10 * totals.mean())
    assert assign_speakers(speech, clients, seed=0) == assigned  # reproducible


def test_fewer_speakers_than_clients_is_bad_input():
    with pytest.raises(BadInput, match="3 speakers cannot fill 10 clients"):
        assign_speakers({"a": 1.0, "b": 2.0, "c": 3.0}, 10)


def make_corpus(root: Path, speakers: int, per_speaker: int = 2, seed: int = 0) -> Path:
    """Tiny 8 kHz clips (0.2-0.6 s) and a Common Voice style validated.tsv: fast to write and to probe."""
    rng = np.random.default_rng(seed)
    (root / "clips").mkdir(parents=True)
    lines = ["client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment"]
    for s in range(speakers):
        for u in range(per_speaker):
            name = f"cv_{s:04d}_{u}.wav"
            sf.write(str(root / "clips" / name), 0.1 * rng.standard_normal(int(8000 * rng.uniform(0.2, 0.6))), 8000)
            lines.append(f"client{s:04d}\t{name}\tsentence {s} {u}\t2\t0\t\t\t\tit\t")
    (root / "validated.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "validated.tsv"


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_cli_10_clients_writes_disjoint_balanced_manifests_and_summary(tmp_path):
    manifest = make_corpus(tmp_path / "cv", speakers=120)
    out = tmp_path / "split10"
    result = run_cli_in_process("partition", str(manifest), "--clients", "10", "--by", "speaker", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "10 clients by speaker" in result.stdout and "total" in result.stdout
    files = sorted(out.glob("client_*.tsv"))
    assert [f.name for f in files] == [f"client_{i:03d}.tsv" for i in range(10)]
    original = read_tsv(manifest)
    header = manifest.read_text().splitlines()[0]
    speakers_per_client = []
    rows = []
    for f in files:
        assert f.read_text().splitlines()[0] == header  # same columns as the manifest
        client_rows = read_tsv(f)
        rows += client_rows
        speakers_per_client.append({r["client_id"] for r in client_rows})
    assert sorted(r["path"] for r in rows) == sorted(r["path"] for r in original)
    all_speakers = [s for group in speakers_per_client for s in group]
    assert len(all_speakers) == len(set(all_speakers)) == 120  # no speaker in two clients
    summary = read_tsv_csv(out / "summary.csv")
    assert [r["manifest"] for r in summary] == [f.name for f in files]
    assert sum(int(r["utterances"]) for r in summary) == 240
    speech = np.array([float(r["speech_sec"]) for r in summary])
    assert np.all(np.abs(speech - speech.mean()) <= 0.10 * speech.mean())
    assert np.allclose([float(r["speech_hours"]) for r in summary], speech / 3600, atol=1e-6)
    # summary speech equals the clips' own lengths
    clips = read_manifest(manifest).clips_dir
    first = read_tsv(files[0])
    clip_seconds = sum(sf.info(str(clips / r["path"])).duration for r in first)
    assert float(summary[0]["speech_sec"]) == pytest.approx(clip_seconds, abs=1e-3)


def read_tsv_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_cli_100_clients_and_a_smaller_split_replaces_the_old_one(tmp_path):
    manifest = make_corpus(tmp_path / "cv", speakers=110, per_speaker=1)
    out = tmp_path / "split"
    assert run_cli_in_process("partition", str(manifest), "--clients", "100", "--out", str(out)).returncode == 0
    files = sorted(out.glob("client_*.tsv"))
    assert len(files) == 100 and files[-1].name == "client_099.tsv"
    speakers = [r["client_id"] for f in files for r in read_tsv(f)]
    assert len(speakers) == len(set(speakers)) == 110 and all(read_tsv(f) for f in files)
    assert run_cli_in_process("partition", str(manifest), "--clients", "10", "--out", str(out)).returncode == 0
    assert len(list(out.glob("client_*.tsv"))) == 10  # no stale client_057.tsv left from the 100-way split


def test_unreadable_clips_are_left_out_with_one_warning(tmp_path):
    manifest = make_corpus(tmp_path / "cv", speakers=4)
    (tmp_path / "cv" / "clips" / "cv_0000_0.wav").write_text("not audio")
    (tmp_path / "cv" / "clips" / "cv_0001_1.wav").unlink()
    partition = partition_manifest(manifest, 2)
    assert partition.warnings == [
        "skipped 2 of 8 clips (unreadable, empty or corrupt): cv_0000_0.wav (not a sound file), cv_0001_1.wav (missing)"
    ]
    assert sum(c.utterances for c in partition.clients) == 6
    written = write_partition(partition, tmp_path / "out")
    assert [p.name for p in written] == ["client_000.tsv", "client_001.tsv", "summary.csv"]


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--clients", "10"], "4 speakers cannot fill 10 clients"),
        (["--clients", "0"], "--clients must be a positive whole number"),
        (["--clients", "2", "--by", "gender"], "--by 'gender' is unknown"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, extra, fragment):
    manifest = make_corpus(tmp_path / "cv", speakers=4)
    result = run_cli_in_process("partition", str(manifest), "--out", str(tmp_path / "o"), *extra)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr, result.stderr


def test_missing_manifest_or_clips_is_exit_2(tmp_path):
    result = run_cli_in_process("partition", str(tmp_path / "none.tsv"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "no such file" in result.stderr
    manifest = make_corpus(tmp_path / "cv", speakers=2)
    result = run_cli_in_process(
        "partition", str(manifest), "--clips-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")
    )
    assert result.returncode == 2 and "error: --clips-dir " in result.stderr and "does not exist" in result.stderr
    result = run_cli_in_process("partition", str(manifest), "--clients", "2", "--out", str(tmp_path / "ok"))
    assert result.returncode == 0, result.stderr
