"""A deployment rehearsed on this machine: the Flower app and commands of a real deployment, run on 127.0.0.1.

One SuperNode per partition (node i holds client i), each on a free port, then `flwr run`; everything started is
stopped when the run ends (fl.deploy.run_local). The same files a deployment on devices uses, so a rehearsal that
passes here tells a user their deployment files work before they copy them to a fleet.
"""
from __future__ import annotations

from pathlib import Path

from w2vprof.errors import BadInput
from w2vprof.fl.deploy import LocalRunResult, NodeSpec, deployment_settings, free_port, run_local, write_deployment
from w2vprof.fl.records import check_new_run_folder
from w2vprof.fl.settings import FlSettings

__all__ = ["LOCALHOST", "rehearse_locally", "local_nodes"]

LOCALHOST = "127.0.0.1"


def local_nodes(settings: FlSettings, nodes: int) -> list[NodeSpec]:
    """One SuperNode per partition of `settings.partitions` (the first `nodes` of them), each on its own port."""
    from w2vprof.fl.data import client_entries

    entries = client_entries(Path(settings.partitions))
    if len(entries) < nodes:
        raise BadInput(f"partitions {settings.partitions} holds {len(entries)} partitions; {nodes} nodes need one each")
    return [
        NodeSpec(name=f"node-{i}", partition_path=str(entries[i].resolve()), clips_dir=settings.clips_dir,
                 port=free_port(LOCALHOST))
        for i in range(nodes)
    ]


def rehearse_locally(settings: FlSettings, out: Path, nodes: int, timeout_s: float = 3600.0) -> LocalRunResult:
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
    plan = write_deployment(deployed.replace(clips_dir=settings.clips_dir), out, f"{LOCALHOST}:{free_port(LOCALHOST)}",
                            specs)
    return run_local(plan, timeout_s=timeout_s)
