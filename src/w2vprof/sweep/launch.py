"""Starting the one process each configuration runs in: how (fork server or spawn) and from what (a model template).

Every configuration runs in a process of its own, so an OOM kill, a native crash or a leak costs that
configuration only. What a process costs before it measures anything is the sweep's overhead, so:

- Linux (and any platform with a fork server, except macOS): children come from multiprocessing's fork server,
  which has already imported torch, torchaudio and the engine (`w2vprof.sweep.child`); it never runs a torch op.
  The fork server is started early (`warm_start`), so its imports overlap the sweep's own start-up.
- On top of it, a *model template* per (model, seed): a process forked from the fork server that builds the
  model once (seeded, on the CPU, single-threaded: GNU OpenMP's thread pool does not survive a fork, the child
  would hang) and then forks one child per configuration. Each child starts with the built model copy-on-write:
  no build per configuration, the same weights and random state a fresh build gives (the engine restores both),
  still one process per configuration, killed alone (it has its own session and process group), and it asks
  the kernel's OOM killer to take it first (oom_score_adj 1000) rather than the template.
- macOS: spawn (a fresh interpreter per configuration). Forking a process that has loaded Apple's frameworks
  (torch with MPS does) is unsupported and can crash or hang; spawn pays the imports and the build per child.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Optional, Protocol, Sequence, Tuple

__all__ = [
    "TEMPLATE_MAX_MEMORY_SHARE",
    "ChildHandle",
    "ChildLauncher",
    "process_context",
    "start_method",
    "template_fits",
    "uses_templates",
    "warm_start",
]

#: What the fork server imports before it forks anything: what building a model needs. (A template imports the
#: rest while it builds: w2vprof.sweep.child.MEASUREMENT_MODULES.)
PRELOAD = ["torch", "torchaudio", "w2vprof.models.pretraining", "w2vprof.sweep.child"]


#: A template keeps one copy of the model's weights in memory while its children train, which moves the point at
#: which a configuration runs out of memory. So a template is used only where that copy is at most this share of
#: the machine's memory, and never on unified memory (Jetson, Apple), where the GPU allocates from the same RAM;
#: elsewhere each child builds its own model.
TEMPLATE_MAX_MEMORY_SHARE = 0.05


#: What a child is asked to do: (the configuration as JSON, where to write its result, where to write its stderr).
ChildRequest = Tuple[str, str, str]


def template_fits(model_bytes: int, total_memory_bytes: int, unified_memory: bool) -> bool:
    """Whether a template's extra copy of the weights is small enough to keep (see TEMPLATE_MAX_MEMORY_SHARE)."""
    return not unified_memory and model_bytes <= TEMPLATE_MAX_MEMORY_SHARE * total_memory_bytes


def start_method(platform: Optional[str] = None, available: Optional[Sequence[str]] = None) -> str:
    """`forkserver` where forking is safe and available, else `spawn` (macOS always: see the module's doc).
    `platform` defaults to sys.platform, `available` to what multiprocessing offers here."""
    platform = sys.platform if platform is None else platform
    if available is None:
        import multiprocessing

        available = multiprocessing.get_all_start_methods()
    if platform == "darwin" or "forkserver" not in available:
        return "spawn"
    return "forkserver"


def uses_templates(method: str) -> bool:
    """Model templates fork children after running torch ops: only behind a fork server (never on macOS)."""
    return method == "forkserver"


def _context(method: str) -> Any:
    import multiprocessing

    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(PRELOAD)
    return context


def process_context(method: Optional[str] = None) -> Any:
    """The multiprocessing context the sweep's processes come from (the fork server where there is one)."""
    return _context(method or start_method())


def warm_start(method: Optional[str] = None) -> None:
    """Start the fork server now (it imports torch & co. while the caller does other work); no-op for spawn."""
    method = method or start_method()
    if method != "forkserver":
        return
    from multiprocessing import forkserver

    _context(method)
    forkserver.ensure_running()


class ChildHandle(Protocol):
    """A running configuration child, as the sweep watches it."""

    pid: int

    def wait(self, timeout_s: float) -> Optional[int]:
        """Its exit code once it has ended (negative: killed by that signal), else None after `timeout_s`."""

    def kill(self) -> int:
        """SIGKILL it and everything it started; returns its exit code."""


def kill_group(pid: int) -> None:
    """SIGKILL a child's process group (it leads one: it called setsid), else the child alone."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class _ProcessChild:
    """A child started by multiprocessing (fork server or spawn)."""

    def __init__(self, process: Any) -> None:
        self._process = process
        self.pid = int(process.pid)

    def wait(self, timeout_s: float) -> Optional[int]:
        self._process.join(timeout_s)
        code = self._process.exitcode
        return None if code is None else int(code)

    def kill(self) -> int:
        kill_group(self.pid)
        self._process.join()
        return int(self._process.exitcode)


class _TemplateChild:
    """A child forked by a model template: the template reports its exit code."""

    def __init__(self, template: _Template, pid: int) -> None:
        self._template = template
        self.pid = pid
        self._code: Optional[int] = None

    def wait(self, timeout_s: float) -> Optional[int]:
        if self._code is None:
            self._code = self._template.exit_code(timeout_s)
        return self._code

    def kill(self) -> int:
        kill_group(self.pid)
        code = self.wait(1.0)
        while code is None:  # the template reaps it and reports; a dead template reports -SIGKILL
            kill_group(self.pid)
            code = self.wait(1.0)
        return code


def _enter(entry: str, *args: Any) -> None:
    """The target of every sweep process: imports w2vprof.sweep.child there, never in the sweep itself (it
    imports torch._dynamo and torchaudio, which the sweep has no use for)."""
    from w2vprof.sweep import child

    getattr(child, entry)(*args)


def template_key(config: Any) -> str:
    """What a template builds for a configuration, as the ProfileConfig (JSON) template_entry builds from: the
    model, its objective and that objective's options, the seed; configurations with the same key share it."""
    from w2vprof.measure.engine import ProfileConfig

    return ProfileConfig(
        model=config.model,
        seed=config.seed,
        device="cpu",
        objective=config.objective,
        vocab=config.vocab,
        clusters=config.clusters,
    ).to_json()


class _Template:
    """The parent's end of one model template process (w2vprof.sweep.child.template_entry)."""

    def __init__(self, context: Any, build_json: str) -> None:
        self.key = build_json
        self._conn, child_end = context.Pipe()
        args = ("template_entry", child_end, build_json, os.getpid())
        self._process = context.Process(target=_enter, args=args, daemon=True)
        self._process.start()
        child_end.close()

    @property
    def alive(self) -> bool:
        return bool(self._process.is_alive())

    def start(self, request: ChildRequest) -> Optional[_TemplateChild]:
        """Ask for a child; None if the template is gone (it failed to build, or was killed)."""
        try:
            self._conn.send(request)
            message = self._conn.recv()
        except (EOFError, OSError):
            return None
        return _TemplateChild(self, int(message[1]))

    def exit_code(self, timeout_s: float) -> Optional[int]:
        try:
            if not self._conn.poll(timeout_s):
                return None
            return int(self._conn.recv()[1])
        except (EOFError, OSError):
            # The template died (its children die with it: PDEATHSIG): most likely the kernel's OOM killer.
            return -signal.SIGKILL

    def close(self) -> None:
        try:
            self._conn.send(None)
        except OSError:
            pass
        self._process.join(5)
        if self._process.exitcode is None:
            kill_group(self._process.pid)
            self._process.join()
        self._conn.close()


class ChildLauncher:
    """Starts configuration children (see the module's doc); `close()` stops its template, if any."""

    def __init__(
        self, method: Optional[str] = None, templates: Optional[bool] = None, unified_memory: bool = False
    ) -> None:
        self.method = method or start_method()
        self.templates = uses_templates(self.method) if templates is None else templates
        self.unified_memory = unified_memory
        self._context = _context(self.method)
        self._template: Optional[_Template] = None
        self._no_template: set[str] = set()  # too big to keep, or died before forking: no template
        self._fits_by_key: dict[str, bool] = {}

    def start(self, config: Any, result_path: str, stderr_path: str) -> ChildHandle:
        request: ChildRequest = (config.to_json(), result_path, stderr_path)
        key = template_key(config)
        if self.templates and key not in self._no_template and self._fits(key, config):
            child = self._template_for(key).start(request)
            if child is not None:
                return child
            self._stop_template()  # it could not build the model (out of memory?): each child builds its own
        self._no_template.add(key)
        return self._spawn(request)

    def _fits(self, key: str, config: Any) -> bool:
        """Whether the template of `key` (the model for this objective and its options) is small enough to keep:
        sized as it would be built, so CTC's model (the encoder without the pretraining head, plus its own head)
        is not sized as the pretraining model."""
        if key not in self._fits_by_key:
            import psutil

            from w2vprof.measure.engine import model_options
            from w2vprof.models.size import parameter_bytes

            total = int(psutil.virtual_memory().total)
            model_bytes = parameter_bytes(config.model, objective=config.objective, options=model_options(config))
            self._fits_by_key[key] = template_fits(model_bytes, total, self.unified_memory)
        return self._fits_by_key[key]

    def _spawn(self, request: ChildRequest) -> ChildHandle:
        process = self._context.Process(target=_enter, args=("forked_entry", *request, os.getpid()), daemon=True)
        process.start()
        return _ProcessChild(process)

    def _template_for(self, key: str) -> _Template:
        if self._template is not None and (self._template.key != key or not self._template.alive):
            self._stop_template()
        if self._template is None:
            self._template = _Template(self._context, key)
        return self._template

    def _stop_template(self) -> None:
        if self._template is not None:
            self._template.close()
            self._template = None

    def close(self) -> None:
        self._stop_template()
