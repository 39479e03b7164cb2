"""The one error type users see: a message and an exit status, mapped to the process exit in cli.main.

A bad value of one setting is a SettingError naming the setting as the library calls it (`batch`, `max_seconds`):
the library is also driven by Flower's run config and by Python callers, so it never names a CLI flag. Whoever
called the library turns the setting into its own word for it (cli.main: the command's flag; fl.settings: the
run-config key).
"""

from __future__ import annotations

from typing import Callable, Iterable

__all__ = ["W2vprofError", "BadInput", "SettingError"]


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


class SettingError(BadInput):
    """One setting has a value we cannot use: `setting` is the library's name for it (`batch`, `length_dist`),
    `problem` the rest of the sentence ("must be a positive whole number, got 0"); str() is both joined.

    Other settings the sentence names are written `{name}` in `problem` and listed in `others`
    ("3 does not divide {batch} 4", others=("batch",)), so each caller's word replaces them too."""

    def __init__(self, setting: str, problem: str, others: tuple[str, ...] = ()) -> None:
        self.setting = setting
        self.problem = problem
        self.others = others
        super().__init__(self.worded(_same).args[0])

    def __reduce__(self) -> tuple[type[SettingError], tuple[str, str, tuple[str, ...]]]:
        # Rebuilt from its parts when it crosses a process (a sweep's child, a Ray actor): args holds only the line.
        return SettingError, (self.setting, self.problem, self.others)

    @classmethod
    def unknown(cls, setting: str, value: object, choices: Iterable[str]) -> SettingError:
        """A value outside a fixed list: "preset 'x' is unknown; choose from grid, lengths"."""
        return cls(setting, f"{value!r} is unknown; choose from {', '.join(choices)}")

    def worded(self, word: Callable[[str], str]) -> BadInput:
        """The same error with each setting called `word(setting)` (a flag, a run-config key); exit status kept."""
        problem = self.problem
        for other in self.others:
            problem = problem.replace("{" + other + "}", word(other))
        return BadInput(f"{word(self.setting)} {problem}", self.exit_code)


def _same(setting: str) -> str:
    return setting
