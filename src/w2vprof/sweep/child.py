"""The processes of a sweep: the configuration child (measure one configuration, write the result as JSON, exit)
and the model template (build one model, then fork a configuration child per request). w2vprof.sweep.launch
explains which start method is used where and why.

The fork server preloads torch, torchaudio and the model code (w2vprof.sweep.launch.PRELOAD), and never runs a torch op,
so no thread pool or CUDA context exists at fork time. A template imports the rest of what a measurement needs
(`MEASUREMENT_MODULES`) in a thread while it builds the model, so each child starts with everything imported.

Also runnable alone for debugging: python -m w2vprof.sweep.child CONFIG_JSON RESULT_PATH
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from multiprocessing.connection import Connection

    from w2vprof.measure.engine import BuiltModel

__all__ = ["MEASUREMENT_MODULES", "forked_entry", "give_tqdm_a_thread_lock", "measure", "template_entry"]

#: Imported by a template while it builds: the rest of a measurement. NB: torch._dynamo (with sympy) is imported
#: lazily by the optimizer's first step and the FLOP counter: about a second in every child otherwise.
MEASUREMENT_MODULES = [
    "psutil",
    "torch._dynamo",
    "torch.utils.flop_counter",
    "w2vprof.devices",
    "w2vprof.measure.engine",
]


def _die_with_parent(parent_pid: Optional[int] = None) -> None:
    """Linux: SIGKILL this process if its parent dies (e.g. the sweep is killed with kill -9).

    The kernel only sends that signal for a parent that dies *after* the request: a parent already gone by then
    (killed between our fork and this call, a window emulation or a slow board widens) leaves us adopted and
    alive. So a caller that knows the parent it was forked from passes its pid, and we exit at once where
    os.getppid() is no longer that parent.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the sweep still kills us on Ctrl-C
            pass
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(137)  # as if the signal had come: 128 + SIGKILL


def _oom_killer_takes_me_first() -> None:
    """Linux: make this child the OOM killer's first choice (over the template that forked it, or the sweep)."""
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:  # pragma: no cover - no /proc (not Linux) or a read-only one
        pass


def measure(config_json: str, result_path: str, built: Optional[BuiltModel] = None) -> int:
    """Measure the configuration and write the result as JSON; returns the process's exit status."""
    from w2vprof.errors import BadInput
    from w2vprof.files import write_text_atomic
    from w2vprof.measure.engine import ProfileConfig, profile_configuration

    config = ProfileConfig.from_json(config_json)
    try:
        result = profile_configuration(config, model=built)
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

    Our parent is the fork server (or a template), which can outlive a killed sweep, so PDEATHSIG alone is not
    enough.
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


def give_tqdm_a_thread_lock() -> None:
    """Give tqdm a thread lock before anything in this child draws a bar.

    torch.compile's FX interpreter makes a tqdm bar (disabled, but made). tqdm's first bar creates a
    multiprocessing lock: a POSIX semaphore that the resource tracker shared with the sweep keeps a note of. This
    child ends in os._exit, which never removes that note, so a sweep with --compile ended with "resource_tracker:
    There appear to be 1 leaked semaphore objects to clean up at shutdown". A thread lock is all this child's bars
    need: no other process draws into its output.
    """
    try:
        import threading

        from tqdm import tqdm
    except ImportError:  # no tqdm installed: nothing will make its lock
        return
    tqdm.set_lock(threading.RLock())


def forked_entry(
    config_json: str, result_path: str, stderr_path: str, sweep_pid: int, built: Optional[BuiltModel] = None
) -> None:
    """Entry point of a configuration child (from the fork server, a template, or spawn). Never returns."""
    os.setsid()  # its own process group: the sweep can stop it and anything it started
    _die_with_parent()
    _oom_killer_takes_me_first()
    _exit_when_gone(sweep_pid)
    give_tqdm_a_thread_lock()
    err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(err, 2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        code = measure(config_json, result_path, built)
    except BaseException:  # noqa: BLE001 - reported to the parent as the last line of stderr
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)


def _built_for(template: BuiltModel, config_json: str, threads: int) -> BuiltModel:
    """In a child forked from a template: the template's model for this configuration's device and threads."""
    from dataclasses import replace

    import torch

    from w2vprof.devices.resolve import resolve_device
    from w2vprof.measure.engine import ProfileConfig

    config = ProfileConfig.from_json(config_json)
    torch.set_num_threads(config.threads or threads)  # what a fresh process would run with
    device = resolve_device(config.device)
    if device != template.device:
        return replace(template, model=template.model.to(device), device=device)
    # NB: the weights are still the template's pages, shared copy-on-write; the first update would copy them a
    # page at a time, as 4 KiB pages even where a fresh build gets transparent huge pages. Fresh allocations of
    # our own (a memcpy) make the timed steps run on weights laid out as in a process that built them.
    with torch.no_grad():
        for tensor in [*template.model.parameters(), *template.model.buffers()]:
            tensor.data = tensor.data.clone()
    return template


def _serve(conn: Connection, template: BuiltModel, threads: int, sweep_pid: int) -> None:
    """Fork one configuration child per request (config_json, result_path, stderr_path); report its pid, then
    its exit code. Ends when the sweep sends None or goes away."""
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        config_json, result_path, stderr_path = request
        template_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            _die_with_parent(template_pid)  # first: the sweep may kill this template while we copy the weights
            conn.close()  # the template's end of the pipe: once the template is gone, the sweep must see EOF
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                built = _built_for(template, config_json, threads)
            except BaseException:  # noqa: BLE001 - a child that cannot even start measuring: build its own
                built = None
            forked_entry(config_json, result_path, stderr_path, sweep_pid, built)
        try:
            conn.send(("started", pid))
            _, status = os.waitpid(pid, 0)
            # os.waitstatus_to_exitcode (Python 3.9+): the exit status, or minus the signal that ended it
            conn.send(("exited", -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)))
        except (EOFError, OSError):
            return


def template_entry(conn: Connection, build_json: str, sweep_pid: int) -> None:
    """A model template: build the model of `build_json` (a ProfileConfig: model, objective and its options,
    seed; w2vprof.sweep.launch.template_key) once, then serve configuration children (see launch.py)."""
    import threading

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sweep's to handle: it stops us
    _die_with_parent()
    threads = torch.get_num_threads()
    # NB: one thread while building. GNU OpenMP's thread pool does not survive fork: a child forked after the
    # pool started hangs in its first parallel op. With one thread torch never starts the pool; the weights are
    # the same bit for bit (the initialisers draw serially).
    torch.set_num_threads(1)
    from w2vprof.measure.engine import ProfileConfig, build_measured_model  # before the thread: no import race

    importer = threading.Thread(target=_import_all, args=(MEASUREMENT_MODULES,), name="w2vprof-imports")
    importer.start()  # mostly Python while the build is mostly torch ops, which release the GIL
    template = build_measured_model(ProfileConfig.from_json(build_json), "cpu")
    importer.join()  # no thread may run at fork time
    _serve(conn, template, threads, sweep_pid)
    conn.close()


def _import_all(names: list[str]) -> None:
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:  # not in this torch (torch.utils.flop_counter is 2.1+): nothing to preload
            pass


if __name__ == "__main__":
    sys.exit(measure(sys.argv[1], sys.argv[2]))
