from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    """Tests share a 2-core machine: keep torch from oversubscribing it."""
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:  # pragma: no cover
        pass


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `w2vprof ARGS` as a real subprocess (exit status and stderr as a user sees them)."""
    return subprocess.run(
        [sys.executable, "-m", "w2vprof.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
