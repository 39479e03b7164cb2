"""Durable results: each row appended with one write and fsync'd the moment its configuration finishes.

After a kill -9 at any moment the file is valid CSV: the header is written (and synced) before anything
runs, and every row goes down in a single write() of a whole line. A torn last line (power cut during a
write) is detected on reading and dropped, so a resume re-measures that configuration.
"""
from __future__ import annotations

import os
from pathlib import Path

from w2vprof.records import RESULT_COLUMNS, ResultRecord, read_results_csv, rows_to_csv_text, write_text_atomic

__all__ = ["ResultsWriter", "load_existing"]


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ResultsWriter:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._append(rows_to_csv_text([], RESULT_COLUMNS, header=True))
            _fsync_dir(self.path.parent)

    def _append(self, text: str) -> None:
        data = text.encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            if written != len(data):  # pragma: no cover - a short write on a local disk: finish it
                os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, record: ResultRecord) -> None:
        self._append(rows_to_csv_text([record], RESULT_COLUMNS, header=False))


def load_existing(path: Path) -> list[ResultRecord]:
    """Rows of an existing results file for --resume. A file that is not w2vprof output is left untouched."""
    path = Path(path)
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        # A torn last line from a power cut mid-write: drop it (its configuration runs again), but only after
        # the rest has read as a results file.
        text = raw[: raw.rfind(b"\n") + 1].decode("utf-8", errors="replace")
        records = read_results_csv(path, text)
        write_text_atomic(path, text)
        return records
    return read_results_csv(path)
