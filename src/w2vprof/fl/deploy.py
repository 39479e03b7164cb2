"""Deployment on real devices with Flower's own runtime: one SuperLink, one SuperNode per device, `flwr run`.

`write_deployment` writes what `flwr run` needs into the run's folder, without touching the repository or
~/.flwr:
  OUT/flower-app/pyproject.toml   the Flower app: components w2vprof.fl.server_app:app / client_app:app and the
                                  run's settings as [tool.flwr.app.config]; no dependencies to install (w2vprof[fl]
                                  must already be installed on the SuperLink machine and on every device)
  OUT/flwr-home/config.toml       the SuperLink connection `flwr run` uses (FLWR_HOME points here)
  OUT/tls/, OUT/supernode-keys/   the deployment's own CA, SuperLink certificate and one key pair per device
                                  (fl.tls); absent with `insecure`
  OUT/commands.sh                 the exact commands, one block per machine
By default only the deployment's own devices can join: the SuperLink serves TLS with its own certificate and
admits only SuperNodes whose public key was registered (`flwr supernode register`); `insecure=True` switches both
off, for a trusted lab network. fl.rehearsal runs the same files on 127.0.0.1.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from w2vprof.errors import SettingError
from w2vprof.files import write_text_atomic
from w2vprof.fl import offline_environment
from w2vprof.fl.settings import FlSettings
from w2vprof.fl.tls import DeploymentKeys, check_key_name, deployment_keys

__all__ = [
    "INSECURE_WARNING",
    "IN_MEMORY_DATABASE",
    "DeploymentPlan",
    "NodeSpec",
    "deployment_settings",
    "parse_node",
    "read_app_config",
    "write_deployment",
]

CONNECTION = "w2vprof"
APP_FOLDER = "flower-app"
IN_MEMORY_DATABASE = ":flwr-in-memory:"  # flower-superlink --database: state kept in memory (a rehearsal's)
INSECURE_WARNING = (
    "--insecure: no TLS and no SuperNode authentication; anyone who reaches {address} can join the federation, "
    "receive the model and read every update. Use it on a trusted lab network only."
)


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
        raise SettingError("node", f"must look like NAME=PARTITION_PATH[,CLIPS_DIR], got {text!r}")
    path, _, clips = rest.partition(",")
    if any(c in name + path + clips for c in '"\n'):
        raise SettingError("node", f"{text!r}: quotes and newlines cannot travel in a Flower node config")
    return NodeSpec(name=name.strip(), partition_path=path.strip(), clips_dir=clips.strip())


@dataclass
class DeploymentPlan:
    out_dir: Path
    superlink_host: str
    superlink_port: int
    nodes: list[NodeSpec] = field(default_factory=list)
    keys: Optional[DeploymentKeys] = None  # None: --insecure (no TLS, any SuperNode may join)
    database: str = ""  # the SuperLink's state; empty: OUT/superlink.db (kept across restarts)

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
        security = self.keys.superlink_flags() if self.keys else ["--insecure"]
        return [
            _tool("flower-superlink"),
            *security,
            "--host",
            listen_host,
            "--port",
            str(self.superlink_port),
            "--database",
            self.database or str(self.out_dir / "superlink.db"),
            "--disable-runtime-dependency-installation",
        ]

    def supernode_command(self, node: NodeSpec) -> list[str]:
        # NB: the SuperNode's --port is its local API for the ClientApp process, not a port others connect to.
        security = self.keys.supernode_flags(node.name) if self.keys else ["--insecure"]
        return [
            _tool("flower-supernode"),
            *security,
            "--superlink",
            self.address,
            "--port",
            str(node.port),
            "--node-config",
            node.node_config(),
        ]

    def register_commands(self) -> list[list[str]]:
        """One `flwr supernode register` per device (run with FLWR_HOME set); none without SuperNode auth."""
        if self.keys is None:
            return []
        return [[_tool("flwr"), *self.keys.register_arguments(node.name, CONNECTION)] for node in self.nodes]

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


def flwr_config_toml(address: str, ca_cert: Optional[Path] = None) -> str:
    """The `flwr` CLI's connection: TLS checked against `ca_cert` (absolute, as flwr requires), else insecure."""
    security = f"root-certificates = {_toml_value(str(ca_cert))}" if ca_cert else "insecure = true"
    return f'''# Written by w2vprof: the SuperLink `flwr run` talks to (FLWR_HOME points at this folder).
[superlink]
default = "{CONNECTION}"

[superlink.{CONNECTION}]
address = "{address}"
{security}
'''


def write_deployment(
    settings: FlSettings,
    out_dir: Path,
    superlink: str,
    nodes: list[NodeSpec],
    *,
    insecure: bool = False,
    new_keys: bool = False,
    tls_names: tuple[str, ...] = (),
    database: str = "",
) -> DeploymentPlan:
    """Write the Flower app, the connection, the keys (unless `insecure`) and commands.sh.

    settings.out_dir becomes OUT/results. Keys already in OUT are kept (devices may hold them) unless `new_keys`;
    the SuperLink certificate names the --superlink host, `tls_names` and localhost.
    """
    host, sep, port = superlink.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SettingError("superlink", f"must be HOST:PORT, got {superlink!r}")
    if not nodes:
        raise SettingError("node", "needs at least one NAME=PARTITION_PATH (one per device)")
    if len({n.name for n in nodes}) != len(nodes):
        raise SettingError("node", f"names must differ, got {', '.join(n.name for n in nodes)}")
    for node in nodes:
        check_key_name(node.name)
    out_dir = Path(out_dir).resolve()
    keys = None if insecure else deployment_keys(out_dir, [host, *tls_names], [n.name for n in nodes], new_keys)
    plan = DeploymentPlan(out_dir, host, int(port), list(nodes), keys, database)
    if not settings.out_dir:
        settings = settings.replace(out_dir=str(out_dir / "results"))
    plan.app_dir.mkdir(parents=True, exist_ok=True)
    plan.flwr_home.mkdir(parents=True, exist_ok=True)
    write_text_atomic(plan.app_dir / "pyproject.toml", app_pyproject(settings))
    ca_cert = keys.tls.ca_cert if keys else None
    write_text_atomic(plan.flwr_home / "config.toml", flwr_config_toml(plan.address, ca_cert))
    write_text_atomic(out_dir / "commands.sh", commands_text(plan))
    return plan


def _security_lines(plan: DeploymentPlan) -> list[str]:
    if plan.keys is None:
        return ["# WARNING: " + INSECURE_WARNING.format(address=plan.address)]
    return [
        f"# Only this deployment's devices can join: TLS with its own CA ({plan.keys.tls.ca_cert}) and SuperNode",
        "# authentication (only the public keys registered in step 2). Private keys (*.key, mode 0600) never leave",
        "# the machine they belong to: server.key stays here, each device gets its own NAME.key and ca.crt only.",
        "# Flower 1.42 serves its Control API (flwr run, flwr supernode register) on the same port without account",
        "# login: let only your fleet's network reach it. Device clocks must agree within 5 s (NTP).",
    ]


def _device_lines(plan: DeploymentPlan, index: int, node: NodeSpec) -> list[str]:
    lines = [f"# {index}. device {node.name}:"]
    if plan.keys is not None:
        lines.append(
            f"#    copy {plan.keys.tls.ca_cert} and {plan.keys.supernodes[node.name].private_key} to it "
            "(same paths, or change them below)"
        )
    return [*lines, shlex.join(plan.supernode_command(node)), ""]


def commands_text(plan: DeploymentPlan) -> str:
    env = " ".join(f"{k}={v}" for k, v in offline_environment({}).items())
    flwr_home = f"FLWR_HOME={shlex.quote(str(plan.flwr_home))} "
    lines = [
        "# w2vprof federated deployment: run each block on the machine it names.",
        f"# Every machine: pip install 'w2vprof[fl]', activate that environment, and: export {env}",
        *_security_lines(plan),
        "",
        f"# 1. SuperLink machine ({plan.superlink_host}):",
        shlex.join(plan.superlink_command()),
        "",
    ]
    if plan.keys is not None:
        lines += ["# 2. SuperLink machine, once the SuperLink runs (once: its database keeps the keys):"]
        lines += [flwr_home + shlex.join(command) for command in plan.register_commands()] + [""]
    first_device = 3 if plan.keys is not None else 2
    for index, node in enumerate(plan.nodes, start=first_device):
        lines += _device_lines(plan, index, node)
    lines += [
        (
            f"# {first_device + len(plan.nodes)}. anywhere that reaches the SuperLink (results are written on the "
            "SuperLink machine):"
        ),
        flwr_home + shlex.join(plan.run_command()),
        "",
    ]
    return "\n".join(lines)


def read_app_config(app_dir: Path) -> dict:
    """[tool.flwr.app.config] of a Flower app's pyproject.toml."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    with open(app_dir / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["tool"]["flwr"]["app"]["config"]


def deployment_settings(settings: FlSettings, nodes: list[NodeSpec], validation: Optional[str]) -> FlSettings:
    """A deployment's clients are its devices; the held-out set lives on the SuperLink machine."""
    if not validation:
        raise SettingError(
            "validation", "is needed by a deployment: a held-out manifest or audio folder on the SuperLink machine"
        )
    return settings.replace(clients=len(nodes), partitions="", validation=os.path.abspath(validation))
