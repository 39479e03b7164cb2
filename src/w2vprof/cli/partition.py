"""`w2vprof partition`: per-client manifests with no shared speaker and about equal speech (paper Sec. 4.2)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from w2vprof.cli.options import parse_positive_int

__all__ = ["register"]


def partition(
    manifest: Path = typer.Argument(..., help="Common Voice style TSV (client_id, path, sentence, ...)."),
    clients: str = typer.Option("10", "--clients", "-n", help="How many clients (e.g. 10 or 100)."),
    by: str = typer.Option("speaker", "--by", help="What no two clients may share: speaker (client_id)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for client_NNN.tsv files and summary.csv."),
    clips_dir: Optional[Path] = typer.Option(
        None, "--clips-dir", help="Where the clips are (default: the manifest's clips/)."
    ),
    seed: int = typer.Option(0, "--seed", help="Orders speakers with equal speech (reproducible splits)."),
) -> None:
    """Split MANIFEST into speaker-disjoint client manifests with about the same hours of speech each."""
    from w2vprof.report.run_views import partition_view
    from w2vprof.report.views import emit
    from w2vprof.workload.partition import partition_manifest, write_partition

    client_count = parse_positive_int(clients, "--clients")
    result = partition_manifest(manifest, client_count, clips_dir=clips_dir, by=by, seed=seed)
    write_partition(result, out)
    for warning in result.warnings:
        typer.echo(f"w2vprof: warning: {warning}", err=True)
    emit(partition_view(result, out), "table")


def register(app: typer.Typer) -> None:
    app.command("partition")(partition)
