"""`w2vprof sweep`: not yet built (placeholder so the app can register every planned command)."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
