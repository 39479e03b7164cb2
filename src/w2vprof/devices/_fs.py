"""Reading files under an injectable filesystem root, so every reader runs against a fake tree in tests."""

from __future__ import annotations

import glob
import os
from typing import Optional

__all__ = ["under", "read_text", "read_number", "glob_under"]


def under(root: str, path: str) -> str:
    """`path` (absolute, as on a real device) inside `root`."""
    return os.path.join(root, path.lstrip("/"))


def read_text(root: str, path: str) -> Optional[str]:
    """The file's text, or None when it is missing or unreadable (a sensor that is not there)."""
    try:
        with open(under(root, path), encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def read_number(root: str, path: str) -> Optional[float]:
    """The one number a sysfs attribute holds, or None (missing, unreadable, or not a number)."""
    text = read_text(root, path)
    if text is None:
        return None
    try:
        return float(text.strip())
    except ValueError:
        return None


def glob_under(root: str, pattern: str) -> list[str]:
    """Paths matching `pattern` (absolute, as on a device) under `root`, sorted, returned as device paths."""
    base = under(root, "/")
    return sorted("/" + os.path.relpath(match, base) for match in glob.glob(under(root, pattern)))
