"""`w2vprof partition`: per-client manifests with no shared speaker and about equal speech (paper Sec. 4.2)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from w2vprof.cli.options import parse_positive_int

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.report.render import Table

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
    from w2vprof.report.render import table_terminal
    from w2vprof.workload.partition import partition_manifest, write_partition

    client_count = parse_positive_int(clients, "--clients")
    result = partition_manifest(manifest, client_count, clips_dir=clips_dir, by=by, seed=seed)
    write_partition(result, out)
    for warning in result.warnings:
        typer.echo(f"w2vprof: warning: {warning}", err=True)
    typer.echo(table_terminal(partition_table(result)), nl=False)
    first, last = result.clients[0].manifest, result.clients[-1].manifest
    typer.echo(f"Client manifests: {out}/{first} .. {last}; summary: {out / 'summary.csv'}")


def partition_table(result) -> Table:
    """Speakers, utterances and hours of speech per client, with a total row in bold."""
    from w2vprof.report.render import Table

    rows = []
    for c in result.clients:
        mean = c.seconds / c.utterances if c.utterances else 0.0
        rows.append([str(c.client), str(len(c.speakers)), str(c.utterances), f"{c.hours:.4f}", f"{mean:.2f}"])
    total_sec = sum(c.seconds for c in result.clients)
    utterances = sum(c.utterances for c in result.clients)
    rows.append(
        [
            "total",
            str(sum(len(c.speakers) for c in result.clients)),
            str(utterances),
            f"{total_sec / 3600:.4f}",
            f"{total_sec / utterances:.2f}" if utterances else "-",
        ]
    )
    return Table(
        title=f"{result.source.name}: {len(result.clients)} clients by speaker",
        columns=["client", "speakers", "utterances", "speech (h)", "mean utt (s)"],
        rows=rows,
        caption=f"speech per client within {100 * result.spread:.1f} % of the mean; no speaker in two clients",
        emphasis=frozenset({len(rows) - 1}),
    )


def register(app: typer.Typer) -> None:
    app.command("partition")(partition)
