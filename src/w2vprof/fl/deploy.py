"""Deployment on real devices with Flower's own runtime: one SuperLink, one SuperNode per device, `flwr run`.

`write_deployment` writes what `flwr run` needs into the run's folder, without touching the repository or
~/.flwr:
  OUT/flower-app/pyproject.toml   the Flower app: components w2vprof.fl.server_app:app / client_app:app and the
                                  run's settings as [tool.flwr.app.config]; no dependencies to install (w2vprof[fl]
                                  must already be installed on the SuperLink machine and on every device)
  OUT/flwr-home/config.toml       the SuperLink connection `flwr run` uses (FLWR_HOME points here)
  OUT/commands.sh                 the exact commands, one block per machine
`run_local` starts the whole thing on 127.0.0.1 (free ports), waits for `flwr run` to finish and stops every
process it started, by process group id, whatever happens.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from w2vprof.errors import BadInput, W2vprofError
from w2vprof.files import write_text_atomic
from w2vprof.fl import offline_environment
from w2vprof.fl.settings import FlSettings

__all__ = [
    "NodeSpec",
    "DeploymentPlan",
    "LocalRunResult",
    "parse_node",
    "deployment_settings",
    "write_deployment",
    "free_port",
    "run_local",
]

CONNECTION = "w2vprof"
APP_FOLDER = "flower-app"


@dataclass(frozen=True)
class NodeSpec:
    """One device: its name in clients.csv and where its partition lies *on that device*."""

    name: str
    partition_path: str
    clips_dir: str = ""
    port: int = 9094  # the SuperNode's own API port (several SuperNodes on one host need different ones)

    def node_config(self) -> str:
        parts = [f'client-name="{self.name}"', f'partition-path="{self.partition_path}"']
        if self.clips_dir:
            parts.append(f'clips-dir="{self.clips_dir}"')
        return " ".join(parts)


def parse_node(text: str) -> NodeSpec:
    """NAME=PARTITION[,CLIPS_DIR] as the CLI takes it."""
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise BadInput(f"--node must look like NAME=PARTITION_PATH[,CLIPS_DIR], got {text!r}")
    path, _, clips = rest.partition(",")
    if any(c in name + path + clips for c in '"\n'):
        raise BadInput(f"--node {text!r}: quotes and newlines cannot travel in a Flower node config")
    return NodeSpec(name=name.strip(), partition_path=path.strip(), clips_dir=clips.strip())


@dataclass
class DeploymentPlan:
    out_dir: Path
    superlink_host: str
    superlink_port: int
    nodes: list[NodeSpec] = field(default_factory=list)

    @property
    def app_dir(self) -> Path:
        return self.out_dir / APP_FOLDER

    @property
    def flwr_home(self) -> Path:
        return self.out_dir / "flwr-home"

    @property
    def address(self) -> str:
        return f"{self.superlink_host}:{self.superlink_port}"

    def environment(self) -> dict[str, str]:
        env = offline_environment()
        env["FLWR_HOME"] = str(self.flwr_home)
        # flower-superlink and flower-supernode start flower-superexec / flwr-clientapp by name from PATH.
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        return env

    def superlink_command(self, listen_host: str = "0.0.0.0") -> list[str]:
        return [
            _tool("flower-superlink"), "--insecure", "--host", listen_host, "--port", str(self.superlink_port),
            "--database", str(self.out_dir / "superlink.db"), "--disable-runtime-dependency-installation",
        ]

    def supernode_command(self, node: NodeSpec) -> list[str]:
        # NB: the SuperNode's --port is its local API for the ClientApp process, not a port others connect to.
        return [
            _tool("flower-supernode"), "--insecure", "--superlink", self.address, "--port", str(node.port),
            "--node-config", node.node_config(),
        ]

    def run_command(self) -> list[str]:
        return [_tool("flwr"), "run", str(self.app_dir), CONNECTION, "--stream"]


def _tool(name: str) -> str:
    """The Flower entry point of this environment (the venv w2vprof runs from), else the one on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def app_pyproject(settings: FlSettings) -> str:
    from w2vprof import __version__

    config = "\n".join(f"{key} = {_toml_value(value)}" for key, value in settings.to_config().items())
    return f'''# Written by `w2vprof fl deploy-config`: the Flower app `flwr run` submits to the SuperLink.
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "w2vprof-fl"
version = "{__version__}"
description = "Federated wav2vec 2.0 pretraining, every client measured (w2vprof)"
license = "Apache-2.0"
# Nothing to install at run time: w2vprof[fl] is installed on the SuperLink machine and on every device.
dependencies = []

[tool.flwr.app]
publisher = "w2vprof"

[tool.flwr.app.components]
serverapp = "w2vprof.fl.server_app:app"
clientapp = "w2vprof.fl.client_app:app"

# The run's settings; override one with `flwr run ... --run-config 'rounds=50'`.
[tool.flwr.app.config]
{config}
'''


def flwr_config_toml(address: str) -> str:
    return f'''# Written by w2vprof: the SuperLink `flwr run` talks to (FLWR_HOME points at this folder).
[superlink]
default = "{CONNECTION}"

[superlink.{CONNECTION}]
address = "{address}"
insecure = true
'''


def write_deployment(settings: FlSettings, out_dir: Path, superlink: str, nodes: list[NodeSpec]) -> DeploymentPlan:
    """Write the Flower app, the connection and commands.sh; settings.out_dir becomes OUT/results."""
    host, sep, port = superlink.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise BadInput(f"--superlink must be HOST:PORT, got {superlink!r}")
    if not nodes:
        raise BadInput("give at least one --node NAME=PARTITION_PATH (one per device)")
    if len({n.name for n in nodes}) != len(nodes):
        raise BadInput("--node names must differ")
    out_dir = Path(out_dir).resolve()
    plan = DeploymentPlan(out_dir=out_dir, superlink_host=host, superlink_port=int(port), nodes=list(nodes))
    if not settings.out_dir:
        settings = settings.replace(out_dir=str(out_dir / "results"))
    plan.app_dir.mkdir(parents=True, exist_ok=True)
    plan.flwr_home.mkdir(parents=True, exist_ok=True)
    write_text_atomic(plan.app_dir / "pyproject.toml", app_pyproject(settings))
    write_text_atomic(plan.flwr_home / "config.toml", flwr_config_toml(plan.address))
    write_text_atomic(out_dir / "commands.sh", commands_text(plan))
    return plan


def commands_text(plan: DeploymentPlan) -> str:
    env = " ".join(f"{k}={v}" for k, v in offline_environment({}).items())
    lines = [
        "# w2vprof federated deployment: run each block on the machine it names.",
        f"# Every machine: pip install 'w2vprof[fl]', activate that environment, and: export {env}",
        "",
        f"# 1. SuperLink machine ({plan.superlink_host}):",
        shlex.join(plan.superlink_command()),
        "",
    ]
    for index, node in enumerate(plan.nodes, start=2):
        lines += [f"# {index}. device {node.name}:", shlex.join(plan.supernode_command(node)), ""]
    lines += [
        f"# {len(plan.nodes) + 2}. anywhere that reaches the SuperLink (results are written on the SuperLink machine):",
        f"FLWR_HOME={shlex.quote(str(plan.flwr_home))} " + shlex.join(plan.run_command()),
        "",
    ]
    return "\n".join(lines)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _wait_for_port(host: str, port: int, deadline: float, process: subprocess.Popen) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BadInput(f"flower-superlink exited with status {process.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise BadInput(f"flower-superlink did not listen on {host}:{port} in time")


@dataclass
class LocalRunResult:
    returncode: int  # of `flwr run`; 124 when it ran past the timeout
    pids: list[int]  # every process started (all stopped by the time this exists)
    logs_dir: Path
    results_dir: Path

    def raise_if_failed(self) -> None:
        """A failed `flwr run` is the run's failure (exit status 1), pointing at the log that says why."""
        if self.returncode != 0:
            raise W2vprofError(f"flwr run exited with status {self.returncode}; see {self.logs_dir / 'flwr-run.log'}")


def _stop(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop a process we started, its process group, and every descendant it spawned (by pid).

    flower-superlink starts flower-superexec in a session of its own (outside our group), and SuperNodes start
    ClientApp processes: they are collected before the parent goes, so none outlives the run.
    """
    import psutil

    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for child in descendants:
        try:
            child.terminate()
        except psutil.Error:
            pass
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    _, alive = psutil.wait_procs(descendants, timeout=grace_s)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # anything left in the group
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL: nothing more to do
        pass


def run_local(plan: DeploymentPlan, timeout_s: float = 3600.0) -> LocalRunResult:
    """SuperLink + every SuperNode on this machine, then `flwr run`; everything started is stopped at the end."""
    logs = plan.out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = plan.environment()
    started: list[subprocess.Popen] = []
    # NB: the log files stay open while their processes run; the stack closes them after every process is stopped.
    with contextlib.ExitStack() as log_files:

        def launch(command: list[str], log_name: str) -> subprocess.Popen:
            handle = log_files.enter_context(open(logs / log_name, "wb"))
            # A new session per process: its group id is its pid, so stopping it stops its Flower children too.
            process = subprocess.Popen(
                command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=plan.out_dir, start_new_session=True
            )
            started.append(process)
            return process

        try:
            superlink = launch(plan.superlink_command(listen_host=plan.superlink_host), "superlink.log")
            _wait_for_port(plan.superlink_host, plan.superlink_port, time.monotonic() + 60, superlink)
            for node in plan.nodes:
                launch(plan.supernode_command(node), f"supernode-{node.name}.log")
            runner = launch(plan.run_command(), "flwr-run.log")
            try:
                returncode = runner.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                returncode = 124
            return LocalRunResult(
                returncode=returncode, pids=[p.pid for p in started], logs_dir=logs,
                results_dir=Path(_run_config_out_dir(plan)),
            )
        finally:
            for process in reversed(started):
                _stop(process)


def _run_config_out_dir(plan: DeploymentPlan) -> str:
    return _read_app_config(plan.app_dir)["out-dir"]


def _read_app_config(app_dir: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    with open(app_dir / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["tool"]["flwr"]["app"]["config"]


def deployment_settings(settings: FlSettings, nodes: list[NodeSpec], validation: Optional[str]) -> FlSettings:
    """A deployment's clients are its devices; the held-out set lives on the SuperLink machine."""
    if not validation:
        raise BadInput("a deployment needs --validation: a held-out manifest or audio folder on the SuperLink machine")
    return settings.replace(clients=len(nodes), partitions="", validation=os.path.abspath(validation))
