"""The processes a local rehearsal starts: each in a session of its own with its output in a log file, and every one
stopped, with everything it spawned, when the rehearsal ends, however it ends.

flower-superlink starts flower-superexec in a session of its own (outside the group we made), and SuperNodes start
ClientApp processes: descendants are collected by pid (psutil) before their parents go, so none outlives the run.
Stopping is done for all processes at once (SIGTERM to all, then one shared grace period), not one after the other:
each SuperNode takes seconds to deregister, and those seconds need not add up. Processes launched with
`stop_last=True` (the SuperLink) are stopped after the others, so SuperNodes can still deregister from it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["GRACE_S", "LocalProcesses", "stop_all"]

GRACE_S = 10.0  # seconds a process gets to exit after SIGTERM before SIGKILL


class LocalProcesses:
    """Start processes (`launch`); leaving the `with` block stops every one of them and closes their logs."""

    def __init__(self, logs_dir: Path, env: dict[str, str], cwd: Path) -> None:
        self.logs_dir, self.env, self.cwd = Path(logs_dir), env, Path(cwd)
        self.started: list[subprocess.Popen] = []
        self._last: list[subprocess.Popen] = []
        self._log_files = contextlib.ExitStack()

    def __enter__(self) -> LocalProcesses:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            stop_all([p for p in self.started if p not in self._last])
            stop_all(self._last)
        finally:
            self._log_files.close()

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.started]

    def log_path(self, log_name: str) -> Path:
        return self.logs_dir / log_name

    def launch(self, command: list[str], log_name: str, stop_last: bool = False) -> subprocess.Popen:
        handle = self._log_files.enter_context(open(self.log_path(log_name), "wb"))  # noqa: SIM115 - closed on exit
        # A new session per process: its group id is its pid, so stopping the group stops its Flower children too.
        process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd, start_new_session=True
        )
        self.started.append(process)
        if stop_last:
            self._last.append(process)
        return process


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def stop_all(processes: list[subprocess.Popen], grace_s: float = GRACE_S) -> None:
    """SIGTERM to every process group and every descendant at once; SIGKILL to whatever is left after `grace_s`."""
    import psutil

    descendants: list[psutil.Process] = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            descendants += psutil.Process(process.pid).children(recursive=True)
    for process in processes:
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:  # one grace period shared by all: they exit side by side
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    _, alive = psutil.wait_procs(descendants, timeout=max(0.0, deadline - time.monotonic()))
    for leftover in alive:
        with contextlib.suppress(psutil.Error):
            leftover.kill()
    for process in processes:
        _signal_group(process, signal.SIGKILL)  # anything left in the group
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)  # reaps it: no zombie left behind
