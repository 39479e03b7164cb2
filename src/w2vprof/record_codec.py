"""One CSV cell <-> one typed value: the codec under every w2vprof row file (w2vprof.records).

A row type is a dataclass whose fields are bool, int, float or str, each perhaps Optional; `column_types` reads them
from the resolved annotations (typing.get_type_hints, so `Optional[int]` written under `from __future__ import
annotations` is the type it names, on Python 3.8 as on newer ones). `cell_text` writes a value as its cell;
`parse_cell` reads a cell back as its column's type, checked against the file's rules (w2vprof.records.RowRules),
or returns why it breaks them (`Invalid`).
"""

from __future__ import annotations

import functools
import math
import types
import typing
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Optional, Union

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.records import RowRules

__all__ = ["ColumnType", "Invalid", "cell_text", "column_types", "parse_cell", "parse_number"]


def cell_text(value: Any) -> str:
    """A value as its CSV cell: empty for None, true/false for a bool, repr for a float (it reads back exactly)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class ColumnType:
    """What one column of a row type holds: its Python type (bool, int, float or str) and whether it may be empty."""

    kind: type
    optional: bool  # Optional[...]: an empty cell is None


#: The types a column may have; anything else in a row type is a programming error (TypeError naming it).
_COLUMN_KINDS = (bool, int, float, str)
#: Optional[X] is Union[X, None]; Python 3.10's `X | None` is a types.UnionType (absent before 3.10).
_UNION_TYPES = (Union, getattr(types, "UnionType", Union))


@functools.lru_cache(maxsize=None)
def column_types(record_type: type) -> dict[str, ColumnType]:
    """Each field's column type, in field order, from the row type's resolved annotations (typing.get_type_hints:
    "Optional[int]" written under `from __future__ import annotations` is read as the type it names)."""
    hints = typing.get_type_hints(record_type)
    return {f.name: _column_type(record_type, f.name, hints[f.name]) for f in fields(record_type)}


def _column_type(record_type: type, name: str, hint: Any) -> ColumnType:
    optional = False
    if typing.get_origin(hint) in _UNION_TYPES:
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        optional = len(members) < len(typing.get_args(hint))
        hint = members[0] if len(members) == 1 else hint
    if hint not in _COLUMN_KINDS:
        raise TypeError(f"{record_type.__name__}.{name}: a column is bool, int, float or str (or Optional), not {hint}")
    return ColumnType(hint, optional)


def parse_number(value: str, is_int: bool) -> Any:
    """The number in a cell, or the reason it is not one (a str)."""
    try:
        number = float(value)
    except ValueError:
        return "not a number"
    if is_int:
        try:
            return int(value)
        except ValueError:
            if not math.isfinite(number):
                return "not a finite number"
            return int(number) if number.is_integer() else "not a whole number"
    return number


def _bool(value: str) -> Any:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    return "not true or false"


def _check_number(name: str, number: Any, rules: RowRules) -> Optional[str]:
    """Why `number` cannot be in column `name` (None when it can)."""
    if name in rules.any_float:
        return None
    if not math.isfinite(number):
        return "not a finite number"
    if name in rules.positive and number <= 0:
        return "must be > 0"
    if name not in rules.signed and name not in rules.positive and number < 0:
        return "must be >= 0"
    return None


def parse_cell(name: str, value: str, column: ColumnType, rules: RowRules) -> Any:
    """The typed value of one cell, or the reason it breaks the rules (a str, returned as `Invalid`)."""
    if value == "":
        if column.optional:
            return None
        if name in rules.positive:
            return Invalid("must be a number > 0")
        # an older file left it empty; NB: an empty non-optional bool reads as "" (as it always has)
        return {int: 0, float: 0.0}.get(column.kind, "")
    if column.kind is bool:
        parsed = _bool(value)
    elif column.kind in (int, float):
        parsed = parse_number(value, column.kind is int)
        if not isinstance(parsed, str):
            reason = _check_number(name, parsed, rules)
            parsed = reason if reason else parsed
    else:
        allowed = dict(rules.choices).get(name)
        return Invalid("not one of " + ", ".join(allowed)) if allowed and value not in allowed else value
    return Invalid(parsed) if isinstance(parsed, str) else parsed


class Invalid(str):
    """A cell's reason for breaking the rules (kept apart from text values by its type)."""
