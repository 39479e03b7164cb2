"""Durable file writing: the one place that knows how to put bytes on disk so a crash never leaves half a file.

- `write_text_atomic` / `write_bytes_atomic`: a whole file at once (synced temp file + rename + directory sync),
  so a reader sees the old file or the new one, never a mix.
- `fsync_dir`: make a create/rename in a folder survive a power cut.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_text_atomic", "write_bytes_atomic", "fsync_dir"]


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


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write a whole file atomically (synced temp file + rename), so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        # NB: a full disk or a kill between open and rename must not leave a stray temp file behind.
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    """`write_bytes_atomic` of UTF-8 text, newlines written as given."""
    write_bytes_atomic(path, text.encode("utf-8"))
