"""A deployment rehearsed on this machine: the Flower app and commands of a real deployment, run on 127.0.0.1.

One SuperNode per partition (node i holds client i), each on a free port, then `flwr run`; everything started is
stopped when the run ends (fl.processes). The same files a deployment on devices uses, TLS and SuperNode
authentication included (unless insecure), so a rehearsal that passes here tells a user their deployment files
work before they copy them to a fleet. Steps: SuperLink; once it listens, every device's public key registered
(`flwr supernode register`, all at once); the SuperNodes; `flwr run`. The rehearsal's SuperLink keeps its state in
memory: it lives for one run, and a failed rehearsal leaves no registered keys behind to trip the next one.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from w2vprof.errors import BadInput, W2vprofError
from w2vprof.fl.deploy import (
    IN_MEMORY_DATABASE,
    DeploymentPlan,
    NodeSpec,
    deployment_settings,
    read_app_config,
    write_deployment,
)
from w2vprof.fl.processes import LocalProcesses
from w2vprof.fl.records import check_new_run_folder
from w2vprof.fl.settings import FlSettings

__all__ = [
    "LOCALHOST",
    "LocalRunResult",
    "free_port",
    "local_nodes",
    "register_supernodes",
    "rehearse_locally",
    "run_local",
    "wait_for_port",
]

LOCALHOST = "127.0.0.1"
START_TIMEOUT_S = 120.0  # for the SuperLink to listen and for a registration (flwr's imports are slow on a Pi)


def free_port(host: str = LOCALHOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_for_port(host: str, port: int, process: subprocess.Popen, timeout_s: float = START_TIMEOUT_S) -> None:
    """Until `process` (the SuperLink) accepts connections on host:port; it exiting first is the error."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise W2vprofError(f"flower-superlink exited with status {process.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise W2vprofError(f"flower-superlink did not listen on {host}:{port} within {timeout_s:g} s")


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


def register_supernodes(plan: DeploymentPlan, processes: LocalProcesses) -> None:
    """Every device's public key registered at the running SuperLink, side by side; a refusal is an error."""
    pending = [
        (node.name, processes.launch(command, f"register-{node.name}.log"))
        for node, command in zip(plan.nodes, plan.register_commands())
    ]
    for name, process in pending:
        try:
            status = process.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            status = 124
        if status != 0:
            log = processes.log_path(f"register-{name}.log")
            raise W2vprofError(f"flwr supernode register {name} exited with status {status}; see {log}")


def run_local(plan: DeploymentPlan, timeout_s: float = 3600.0) -> LocalRunResult:
    """SuperLink, registrations, every SuperNode, then `flwr run`, on this machine; all stopped at the end."""
    with LocalProcesses(plan.out_dir / "logs", plan.environment(), plan.out_dir) as processes:
        superlink = processes.launch(
            plan.superlink_command(listen_host=plan.superlink_host), "superlink.log", stop_last=True
        )
        wait_for_port(plan.superlink_host, plan.superlink_port, superlink)
        register_supernodes(plan, processes)
        for node in plan.nodes:
            processes.launch(plan.supernode_command(node), f"supernode-{node.name}.log")
        runner = processes.launch(plan.run_command(), "flwr-run.log")
        try:
            returncode = runner.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            returncode = 124
    return LocalRunResult(
        returncode=returncode,
        pids=processes.pids,
        logs_dir=processes.logs_dir,
        results_dir=Path(read_app_config(plan.app_dir)["out-dir"]),
    )


def local_nodes(settings: FlSettings, nodes: int) -> list[NodeSpec]:
    """One SuperNode per partition of `settings.partitions` (the first `nodes` of them), each on its own port."""
    from w2vprof.fl.data import client_entries

    entries = client_entries(Path(settings.partitions))
    if len(entries) < nodes:
        raise BadInput(f"partitions {settings.partitions} holds {len(entries)} partitions; {nodes} nodes need one each")
    return [
        NodeSpec(
            name=f"node-{i}",
            partition_path=str(entries[i].resolve()),
            clips_dir=settings.clips_dir,
            port=free_port(LOCALHOST),
        )
        for i in range(nodes)
    ]


def rehearse_locally(
    settings: FlSettings, out: Path, nodes: int, timeout_s: float = 3600.0, insecure: bool = False
) -> LocalRunResult:
    """Write the deployment into `out` (results in out/results) and run it on this machine.

    `settings.partitions` may be "synthetic": a corpus with one speaker per node is generated into `out` first.
    """
    from w2vprof.fl import require_flwr
    from w2vprof.fl.data import prepare_synthetic, validation_source

    require_flwr()
    out = Path(out).resolve()
    check_new_run_folder(out / "results")
    settings = settings.replace(clients=nodes, out_dir=str(out))
    if settings.synthetic:
        settings = prepare_synthetic(settings)
    specs = local_nodes(settings, nodes)
    deployed = deployment_settings(settings.replace(out_dir=""), specs, str(validation_source(settings)))
    plan = write_deployment(
        deployed.replace(clips_dir=settings.clips_dir),
        out,
        f"{LOCALHOST}:{free_port(LOCALHOST)}",
        specs,
        insecure=insecure,
        database=IN_MEMORY_DATABASE,
    )
    return run_local(plan, timeout_s=timeout_s)
