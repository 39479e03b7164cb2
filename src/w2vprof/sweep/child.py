"""The child process of a sweep: measure one configuration, write the result as JSON, exit.

Children are forked from a fork server that has already imported torch (multiprocessing "forkserver" with
preloading): a fresh interpreter would spend ~2 s per configuration importing torch. The server never runs a
torch op, so no thread pool or CUDA context exists at fork time. Each child still gets a process of its own: an
OOM kill, a crash in a native library or a leak costs that configuration only.

Also runnable alone for debugging: python -m w2vprof.sweep.child CONFIG_JSON RESULT_PATH
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import asdict
from pathlib import Path

# Preloaded by the fork server, so children start with them imported. torch._dynamo (with sympy and
# triton) is imported lazily by the optimizer's first step and the FLOP counter: ~1 s a child otherwise.
import psutil  # noqa: F401
import torch  # noqa: F401
import torch._dynamo  # noqa: F401
import torch.utils.flop_counter  # noqa: F401
import torchaudio  # noqa: F401

import w2vprof.devices  # noqa: F401
import w2vprof.measure.engine  # noqa: F401
import w2vprof.models.pretraining  # noqa: F401


def _die_with_parent() -> None:
    """Linux: SIGKILL this child if its parent dies (e.g. the sweep is killed with kill -9)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: the sweep still kills us on Ctrl-C
        pass


def measure(config_json: str, result_path: str) -> int:
    from w2vprof.errors import BadInput
    from w2vprof.measure.engine import ProfileConfig, profile_configuration
    from w2vprof.records import write_text_atomic

    config = ProfileConfig.from_json(config_json)
    try:
        result = profile_configuration(config)
    except BadInput as exc:
        print(f"BadInput: {exc}", file=sys.stderr)
        return 2
    payload = {
        "record": asdict(result.record),
        "layers": [asdict(layer) for layer in result.layers],
        "step_times_s": result.step_times,
        "warnings": result.warnings,
    }
    write_text_atomic(Path(result_path), json.dumps(payload))
    return 0


def _exit_when_gone(sweep_pid: int, interval_s: float = 1.0) -> None:
    """A daemon thread that ends this child when the sweep process is gone (killed with kill -9, say).

    Our parent is the fork server, which can outlive a killed sweep, so PDEATHSIG alone is not enough.
    """
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            try:
                os.kill(sweep_pid, 0)
            except ProcessLookupError:
                os._exit(137)
            except PermissionError:  # pragma: no cover - alive, owned by someone else
                pass

    threading.Thread(target=watch, name="w2vprof-sweep-watch", daemon=True).start()


def forked_entry(config_json: str, result_path: str, stderr_path: str, sweep_pid: int) -> None:
    """Entry point in a process forked from the fork server."""
    os.setsid()  # its own process group: the sweep can stop it and anything it started
    _die_with_parent()
    _exit_when_gone(sweep_pid)
    err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(err, 2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        code = measure(config_json, result_path)
    except BaseException:  # noqa: BLE001 - reported to the parent as the last line of stderr
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(measure(sys.argv[1], sys.argv[2]))
