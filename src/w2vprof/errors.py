"""The one error type users see: a message and an exit status, mapped to the process exit in cli.main."""
from __future__ import annotations

__all__ = ["W2vprofError", "BadInput"]


class W2vprofError(Exception):
    """An expected failure, reported as one line on stderr with `exit_code` (no traceback)."""

    exit_code: int = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BadInput(W2vprofError):
    """The user gave us something we cannot use (unknown model, bad number, unreadable file): exit 2."""

    exit_code = 2
