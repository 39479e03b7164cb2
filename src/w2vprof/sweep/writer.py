"""The sweep's results file: one writer at a time, each row durable the moment its configuration finishes.

Use `ResultsWriter.open`, which takes the file's one-writer lock before it reads what the file holds:

    writer, existing = ResultsWriter.open(out, resume=True)   # BadInput if another w2vprof writes `out`
    with writer:                                               # the lock is held until close() / the with ends
        for config in configurations_not_in(existing):
            writer.append(measure(config))                     # one write + fsync per row
        writer.replace(rows)                                    # or: rewrite all rows atomically (--retry)

After a kill -9 at any moment the file is valid CSV: the header is written (and synced) before anything runs,
and every row goes down in a single write() of a whole line. A torn last line (power cut during a write) is
dropped when the file is opened again, so a resume re-measures that configuration. A failed write (full disk,
I/O error) leaves no partial line and raises DiskWriteError (exit 2) naming the file; the rows before it stay.
The lock is an flock on `<file>.lock` (see w2vprof.files.WriterLock): the kernel releases it when the process
dies, so a killed sweep never blocks the next one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from w2vprof.errors import BadInput, SettingError
from w2vprof.files import DiskWriteError, WriterLock, write_text_atomic
from w2vprof.records import RESULT_COLUMNS, RESULT_RULES, RecordCsv, ResultRecord, read_results_csv

__all__ = ["ResultsWriter", "load_existing"]

#: Added to a failed write's message: what the user does next.
RESUME_HINT = "rerun with resume to finish the sweep"


class ResultsWriter:
    """Appends results rows to one file durably; made by `ResultsWriter.open` (locked) or directly (unlocked)."""

    def __init__(self, path: Path, lock: Optional[WriterLock] = None) -> None:
        self.lock = lock
        self.rows = RecordCsv(path, RESULT_COLUMNS, RESULT_RULES)  # every row readable by a resume
        self.path = self.rows.path

    @classmethod
    def open(cls, path: Path, resume: bool) -> tuple[ResultsWriter, list[ResultRecord]]:
        """Become the one writer of `path`; return the writer and the rows the file already holds.

        - Another w2vprof process writing `path`: BadInput "<path>: being written by another w2vprof process
          (pid N)". The lock is taken before the file is read and held until `close()` (or the `with` block ends).
        - A missing file is created exclusively with its header; an empty or header-only file is used as it is.
        - A file with rows: BadInput naming it unless `resume`; with `resume` its rows are returned (a torn last
          line is dropped first). A file that is not a results file is BadInput and left untouched.
        """
        path = Path(path)
        lock = WriterLock.acquire(path)
        try:
            existing = load_existing(path) if path.exists() and path.stat().st_size > 0 else []
            if existing and not resume:
                raise SettingError(
                    "out",
                    f"{path} already holds {len(existing)} result rows: {{resume}} it, or choose a new file",
                    ("resume",),
                )
            return cls(path, lock), existing
        except BaseException:
            lock.release()
            raise

    def append(self, record: ResultRecord) -> None:
        """Write one row (one write + fsync). DiskWriteError (exit 2) if the disk refuses it; no partial line."""
        try:
            self.rows.append(record)
        except DiskWriteError as exc:
            raise DiskWriteError(f"{exc}; {RESUME_HINT}", exc.errno) from None

    def replace(self, records: Iterable[ResultRecord]) -> None:
        """Make `records` the file's rows, rewriting it atomically (e.g. re-measured error rows in place of the
        old ones). A crash leaves the old file or the new one; the lock stays held."""
        try:
            self.rows.replace_all(records)
        except DiskWriteError as exc:
            raise DiskWriteError(f"{exc}; {RESUME_HINT}", exc.errno) from None

    def close(self) -> None:
        """Release the one-writer lock (rows are already on disk); safe to call twice."""
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def load_existing(path: Path) -> list[ResultRecord]:
    """Rows of an existing results file for a resume (a header-only file gives none). A file that is not w2vprof
    output is BadInput and left untouched; a torn last line is dropped from the file once the rest reads."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror})") from None
    if raw and not raw.endswith(b"\n"):
        # A torn last line from a power cut mid-write: drop it (its configuration runs again), but only after
        # the rest has read as a results file.
        text = raw[: raw.rfind(b"\n") + 1].decode("utf-8", errors="replace")
        records = read_results_csv(path, text, require_rows=False)
        write_text_atomic(path, text)
        return records
    try:
        return read_results_csv(path, raw.decode("utf-8"), require_rows=False)
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not a text CSV file") from None
