"""Workload options shared by `profile` and `sweep` (docs/audio.md explains them)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

AUDIO = typer.Option(None, "--audio", help="Folder of audio files or a Common Voice style TSV manifest.")
CLIPS_DIR = typer.Option(None, "--clips-dir", help="Where the manifest's clips are (default: its clips/ folder).")
MAX_SECONDS = typer.Option(None, "--max-seconds", help="Randomly crop longer utterances to this length (fairseq).")
LENGTH_DIST = typer.Option(
    None, "--length-dist", help="Synthetic length distribution instead of fixed --seconds, e.g. normal:5.5,2.0"
)


def workload_kwargs(
    audio: Optional[Path], clips_dir: Optional[Path], max_seconds: Optional[str], length_dist: Optional[str]
) -> dict:
    from w2vprof.cli.options import parse_positive_float

    return {
        "audio": str(audio) if audio else None,
        "clips_dir": str(clips_dir) if clips_dir else None,
        "max_seconds": parse_positive_float(max_seconds, "--max-seconds") if max_seconds is not None else None,
        "length_dist": length_dist,
    }
