"""Parsing of user-supplied values shared by several commands; every failure is BadInput (exit 2).

These are CLI code, so their messages name the flag they were given (`what`, e.g. "--batch"). The library's own
errors name settings instead (w2vprof.errors.SettingError), which cli.main shows as the invoked command's flag."""

from __future__ import annotations

import re
from typing import Optional, Sequence

from w2vprof.errors import BadInput

__all__ = [
    "check_format",
    "parse_positive_float",
    "parse_positive_int",
    "parse_float_list",
    "parse_int_list",
    "parse_name_list",
    "parse_whole_number",
    "parse_bytes",
]


def check_format(fmt: str, allowed: Sequence[str]) -> str:
    """`fmt` if the command's view can be written in it (`allowed`), checked before any work."""
    if fmt not in allowed:
        raise BadInput(f"unknown --format {fmt!r}; choose from {', '.join(allowed)}")
    return fmt


def parse_positive_float(text: str | float, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise BadInput(f"{what} must be a positive number, got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise BadInput(f"{what} must be a positive number, got {text!r}")
    return value


def parse_positive_int(text: str | int, what: str) -> int:
    try:
        value = int(str(text).strip())
    except (TypeError, ValueError):
        raise BadInput(f"{what} must be a positive whole number, got {text!r}") from None
    if value <= 0:
        raise BadInput(f"{what} must be a positive whole number, got {text!r}")
    return value


def parse_whole_number(text: str | int, what: str) -> int:
    """A count that may be zero (e.g. --warmup)."""
    if not str(text).strip().isdigit():
        raise BadInput(f"{what} must be a whole number >= 0, got {text!r}")
    return int(str(text).strip())


def _split(text: str) -> list[str]:
    return [part.strip() for part in str(text).split(",") if part.strip()]


def parse_float_list(text: str, what: str) -> list[float]:
    parts = _split(text)
    if not parts:
        raise BadInput(f"{what} needs at least one value")
    return [parse_positive_float(part, what) for part in parts]


def parse_int_list(text: str, what: str) -> list[int]:
    parts = _split(text)
    if not parts:
        raise BadInput(f"{what} needs at least one value")
    return [parse_positive_int(part, what) for part in parts]


def parse_name_list(text: str, what: str, allowed: Optional[tuple[str, ...]] = None) -> list[str]:
    """The comma list's names, each one of `allowed` (any name when None: the caller checks them)."""
    parts = _split(text)
    if not parts:
        raise BadInput(f"{what} needs at least one value")
    for part in parts:
        if allowed is not None and part not in allowed:
            raise BadInput(f"unknown {what} {part!r}; choose from {', '.join(allowed)}")
    return parts


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_bytes(text: str, what: str) -> int:
    """'8GiB' -> 8589934592, '8GB' -> 8000000000, '512MiB', '1073741824'."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise BadInput(f"{what} must be a size such as 8GiB, 512MiB or 8GB, got {text!r}")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if value <= 0:
        raise BadInput(f"{what} must be positive, got {text!r}")
    return int(value)
