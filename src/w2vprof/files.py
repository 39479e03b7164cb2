"""Durable files: the one place that knows how to put bytes on disk so a crash never leaves half a file, and how
to read a CSV file back without trusting it.

- `write_text_atomic` / `write_bytes_atomic`: a whole file at once (synced temp file + rename + folder sync),
  so a reader sees the old file or the new one, never a mix.
- `DurableCsv`: an append-only CSV file. The header is written once, when the file is created (exclusively:
  O_CREAT|O_EXCL); each `append_rows` is one os.write of whole lines followed by fsync, and a failed write is
  cut back to the previous size, so the file holds whole rows only. `replace_rows` rewrites it atomically.
- `WriterLock`: one writer per file. An exclusive flock on the sidecar `<file>.lock`, which holds the holder's
  pid; the kernel drops the lock when its process dies, so a killed writer never blocks the next one.
- `read_csv_rows`: a CSV file's header and rows (cells as text, with their line numbers); a UTF-8 BOM and CRLF
  line ends are accepted, anything that is not a readable CSV file is BadInput naming it.
- `DiskWriteError`: a failed write (no space, quota, I/O error, read-only file system...) as one line naming
  the file and the cause, exit status 2.
"""

from __future__ import annotations

import csv
import errno
import io
import os
from pathlib import Path
from typing import AnyStr, Dict, Iterable, List, Optional, Sequence, Tuple

from w2vprof.errors import BadInput, W2vprofError

__all__ = [
    "write_text_atomic",
    "write_bytes_atomic",
    "fsync_dir",
    "DiskWriteError",
    "disk_error",
    "csv_text",
    "DurableCsv",
    "WriterLock",
    "lock_path",
    "read_csv_rows",
    "read_text",
    "strip_bom",
    "CsvRows",
]


class DiskWriteError(W2vprofError):
    """Writing a file failed (full disk, quota, I/O error, read-only file system): one line, exit status 2."""

    exit_code = 2

    def __init__(self, message: str, errno_value: Optional[int] = None) -> None:
        super().__init__(message)
        self.errno = errno_value


def disk_error(path: Path, exc: OSError, kept: str = "") -> DiskWriteError:
    """`exc` as one line: "<path>: no space left on device; <kept>"."""
    cause = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    cause = cause[:1].lower() + cause[1:]
    if exc.errno == errno.ENOSPC:
        cause += " (free some space)"
    return DiskWriteError(f"{path}: {cause}" + (f"; {kept}" if kept else ""), exc.errno)


def fsync_dir(folder: Path) -> None:
    """Sync a folder's entries (a new or renamed file) to disk; a no-op where the OS does not allow it."""
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


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is down (a short write on a local disk is rare, but legal)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_bytes_atomic(path: Path, data: bytes, mode: Optional[int] = None, exclusive: bool = False) -> None:
    """Write a whole file atomically (synced temp file + rename), so a reader never sees half a file.

    The temp file is named after this process, so two processes writing one path never share it. `mode`: the
    file's exact permissions from its first byte (e.g. 0o600 for a secret; default: 0o666 less the umask).
    `exclusive`: never replace an existing file (FileExistsError, even for one that appears meanwhile: the
    temp file is hard-linked into place). Any other OSError becomes DiskWriteError naming `path`; the file
    keeps its previous content and no temp file is left behind.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        _remove(tmp)  # a stale one from an earlier crash of a process with our pid
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
        try:
            if mode is not None:
                os.fchmod(fd, mode)  # exactly `mode`, whatever the umask
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            os.link(tmp, path)
            _remove(tmp)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        # NB: a full disk or a kill between open and rename must not leave a stray temp file behind.
        _remove(tmp)
        if isinstance(exc, OSError) and not (exclusive and isinstance(exc, FileExistsError)):
            raise disk_error(path, exc, "its previous content is unchanged") from None
        raise
    fsync_dir(path.parent)


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_text_atomic(path: Path, text: str) -> None:
    """`write_bytes_atomic` of UTF-8 text, newlines written as given."""
    write_bytes_atomic(path, text.encode("utf-8"))


def csv_text(rows: Iterable[Sequence[str]], header: Optional[Sequence[str]] = None) -> str:
    """CSV lines ("\\n" line ends, minimal quoting) of `header` (if given) and `rows` of text cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header is not None:
        writer.writerow(list(header))
    writer.writerows(list(row) for row in rows)
    return buffer.getvalue()


def lock_path(path: Path) -> Path:
    """The sidecar that `WriterLock` locks for `path`: `<file>.lock`, next to it."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


class WriterLock:
    """An exclusive, process-lifetime lock on one file, so a file has one writer at a time.

    The lock is an flock(2) on the sidecar `<file>.lock`, which also holds the holder's pid (for the message a
    second writer gets). The kernel releases an flock when the process holding it dies, so a sweep killed with
    kill -9 never blocks the next one; a stale sidecar left by such a kill is simply locked again. `release`
    removes the sidecar. Where flock does not exist (Windows) the lock is a no-op.

        lock = WriterLock.acquire(Path("results/x.csv"))  # BadInput if another process holds it
        ...
        lock.release()
    """

    def __init__(self, path: Path, fd: Optional[int]) -> None:
        self.path = Path(path)
        self._fd = fd

    @classmethod
    def acquire(cls, path: Path) -> WriterLock:
        """Take the lock on `path` without waiting; BadInput naming the file and the holder's pid if it is held."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no flock, no lock
            return cls(path, None)
        sidecar = lock_path(path)
        while True:
            try:
                fd = os.open(sidecar, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise disk_error(sidecar, exc, "cannot take the one-writer lock of " + str(path)) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_pid(fd)
                os.close(fd)
                raise BadInput(f"{path}: being written by another w2vprof process ({holder})") from None
            if _same_file(fd, sidecar):
                break
            # The holder released (and removed) the sidecar between our open and our flock: lock the new one.
            os.close(fd)
        os.ftruncate(fd, 0)
        _write_all(fd, f"{os.getpid()}\n".encode())
        return cls(path, fd)

    def release(self) -> None:
        """Remove the sidecar, then drop the lock (in that order: a waiter then sees a removed file and retries)."""
        if self._fd is None:
            return
        _remove(lock_path(self.path))
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid not known yet"


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


class DurableCsv:
    """An append-only CSV file that survives a kill -9 or a power cut at any moment as valid CSV.

    - Opening a missing file creates it exclusively (O_CREAT|O_EXCL) with its header, synced with its folder;
      opening an empty file writes the header; opening a file whose first line is another header is BadInput
      (rows of these columns would be misread under it).
    - `append_rows`: all rows in one os.write of whole lines, then fsync. If the write fails (no space, I/O
      error), the file is cut back to its previous size, so no partial line is ever left; DiskWriteError says
      which file and why, and that the rows written before are intact.
    - `replace_rows`: the whole file rewritten atomically (header + rows), e.g. to replace re-measured rows.

    It does not lock: a caller that must be the only writer holds a `WriterLock` on the path as well.
    """

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = tuple(columns)
        self.header = csv_text([], self.columns)
        if not self._create():
            self._check_header()

    def _create(self) -> bool:
        """Create the file with its header unless it exists; True if this call created it."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        except OSError as exc:
            raise disk_error(self.path, exc, "nothing was written") from None
        try:
            _write_all(fd, self.header.encode("utf-8"))
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            os.unlink(self.path)  # a file without its whole header is no results file: leave none
            raise disk_error(self.path, exc, "nothing was written") from None
        os.close(fd)
        fsync_dir(self.path.parent)
        return True

    def _check_header(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                first = handle.readline()
        except OSError as exc:
            raise disk_error(self.path, exc) from None
        if not first:
            self._append_bytes(self.header.encode("utf-8"))
            return
        if strip_bom(first).rstrip(b"\r\n") != self.header.rstrip("\n").encode("utf-8"):
            raise BadInput(f"{self.path}: its columns are not the ones this w2vprof writes; use a new file")

    def append_rows(self, rows: Iterable[Sequence[str]]) -> None:
        """Append `rows` (text cells, in column order) in one write + fsync: all of them or none."""
        text = csv_text(rows)
        if text:
            self._append_bytes(text.encode("utf-8"))

    def _append_bytes(self, data: bytes) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            raise disk_error(self.path, exc, "rows written before are intact") from None
        try:
            size = os.fstat(fd).st_size
            try:
                _write_all(fd, data)
                os.fsync(fd)
            except OSError as exc:
                _cut_back(fd, size)
                raise disk_error(self.path, exc, "rows written before are intact") from None
        finally:
            os.close(fd)

    def replace_rows(self, rows: Iterable[Sequence[str]]) -> None:
        """Rewrite the whole file (header + `rows`) atomically: a crash leaves the old file or the new one."""
        write_text_atomic(self.path, self.header + csv_text(rows))


def _cut_back(fd: int, size: int) -> None:
    """Undo a failed append: whatever part of it reached the file is cut off (best effort on a failing disk)."""
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError:
        pass


#: A CSV file read by `read_csv_rows`: its header, and each row (cells by column name) with its line number.
CsvRows = Tuple[List[str], List[Tuple[int, Dict[str, str]]]]  # typing generics: evaluated at import (Python 3.8)


def read_csv_rows(path: Path, text: Optional[str] = None, what: str = "CSV") -> CsvRows:
    """The header and rows of the CSV file `path` (or of `text`, named `path` in messages).

    Each row comes with its line number and has exactly the header's cells: a row with more or fewer cells is a
    torn or foreign line and BadInput, as is a header cut short (a file that ends inside its first line), a
    missing file, a folder, binary data or malformed quoting. A UTF-8 BOM and CRLF line ends are accepted;
    blank lines are skipped. `what` names the kind of file in messages ("results" -> "not a w2vprof results file").
    """
    path = Path(path)
    if text is None:
        text = read_text(path, what)
    text = strip_bom(text)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, [])
        if header and not any(end in text for end in "\r\n"):
            raise BadInput(f"{path}: not a w2vprof {what} file (it ends inside its header row)")
        rows = []
        for cells in reader:
            if not cells:
                continue
            if len(cells) != len(header):
                side = "more" if len(cells) > len(header) else "fewer"
                raise BadInput(
                    f"{path}: line {reader.line_num} has {side} cells than the header (a torn or foreign line)"
                )
            rows.append((reader.line_num, dict(zip(header, cells))))
    except csv.Error as exc:
        raise BadInput(f"{path}: not a readable CSV file ({exc})") from None
    return header, rows


def strip_bom(data: AnyStr) -> AnyStr:
    """`data` without a leading UTF-8 byte-order mark (as Excel writes). NB: str.removeprefix is Python 3.9+."""
    bom = "\ufeff" if isinstance(data, str) else b"\xef\xbb\xbf"
    return data[len(bom) :] if data.startswith(bom) else data


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of `path`; BadInput naming the file for a missing file, a folder, binary data or a read error."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a folder, not a {what} file") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not a text {what} file") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({os.strerror(exc.errno) if exc.errno else exc})") from None
