"""`w2vprof fl simulate`: Flower's simulation engine (Ray) on this machine, one virtual SuperNode per client.

The ServerApp runs in this process; ClientApps run in Ray actor processes, `parallel` at a time. By default one
client trains at a time with every core, so a client's seconds are what one device alone would take (clients
training side by side share cores and memory bandwidth and would each look slower).

With device cuda each client actor is given a share of a GPU: Ray sets an actor's CUDA_VISIBLE_DEVICES to the
GPUs it was given, so an actor given none cannot see CUDA at all.

With a fleet (FleetOptions) every client stands for a device of the fleet and each round also gets its virtual
time on that fleet; updates the fleet would lose are left out of the aggregate (virtual_fleet.py).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from w2vprof.errors import BadInput, SettingError
from w2vprof.fl.records import FleetRun, RoundRecord
from w2vprof.fl.settings import FlSettings
from w2vprof.fl.virtual_fleet import FleetInputs, FleetOptions

__all__ = [
    "SimulationOptions",
    "check_partitions",
    "simulate",
    "backend_config",
    "visible_cuda_gpus",
    "gpu_share",
]


@dataclass(frozen=True)
class SimulationOptions:
    parallel: int = 1  # clients training at the same time (Ray actors)
    cpus: int = 0  # cores given to Ray; 0: all of this machine's
    gpus_per_client: float = 0.0  # share of a GPU per client with device cuda; 0: the GPUs split among `parallel`
    verbose: bool = False  # Flower's and Ray's own INFO logs


def check_partitions(settings: FlSettings) -> None:
    """Fail before Ray starts: a partition per client and a held-out set must exist."""
    from w2vprof.fl.data import client_entries, validation_source

    entries = client_entries(Path(settings.partitions))
    if len(entries) < settings.clients:
        raise SettingError(
            "partitions",
            f"{settings.partitions} holds {len(entries)} client partitions; {{clients}} is {settings.clients}",
            ("clients",),
        )
    if not validation_source(settings).exists():
        raise SettingError("validation", f"{validation_source(settings)}: no such file or folder")


def visible_cuda_gpus() -> int:
    """GPUs this process's CUDA sees (CUDA_VISIBLE_DEVICES applied), as Ray will hand them to actors."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpu_share(parallel: int, visible_gpus: int, requested: float = 0.0) -> float:
    """The share of a GPU each client actor asks Ray for, so that `parallel` clients fit on the visible GPUs.

    requested > 0 is the caller's choice (a fraction below 1, or whole GPUs). Otherwise one GPU each while there
    are enough, else the clients split them evenly: 3 clients on 2 GPUs ask for 0.5 each (Ray places fractional
    shares on one GPU, never across two).
    """
    if visible_gpus < 1:
        raise BadInput("device cuda: no CUDA GPU is visible to this process")
    if requested < 0 or (requested > 1 and requested != int(requested)):
        raise BadInput(f"gpus_per_client must be a fraction of one GPU or a whole number of GPUs, got {requested}")
    if requested > visible_gpus:
        raise BadInput(f"gpus_per_client {requested} is more than the {visible_gpus} GPU(s) visible here")
    if requested:
        return float(requested)
    return 1.0 if visible_gpus >= parallel else 1.0 / math.ceil(parallel / visible_gpus)


def backend_config(settings: FlSettings, options: SimulationOptions, visible_gpus: Optional[int] = None) -> dict:
    """Ray's resources: cores split among the `parallel` clients and, with device cuda, GPU shares (see gpu_share).

    visible_gpus: CUDA GPUs this machine offers (None: ask torch, only when the device is cuda).
    """
    cpus = options.cpus or os.cpu_count() or 1
    parallel = max(1, min(options.parallel, settings.clients))
    cpus_per_client = max(1, cpus // parallel)
    gpus, gpus_per_client = 0, 0.0
    if settings.device == "cuda":  # Ray schedules NVIDIA GPUs only: cpu and mps clients ask for none
        gpus = visible_cuda_gpus() if visible_gpus is None else visible_gpus
        gpus_per_client = gpu_share(parallel, gpus, options.gpus_per_client)
    return {
        "client_resources": {"num_cpus": cpus_per_client, "num_gpus": gpus_per_client},
        "init_args": {
            "num_cpus": cpus_per_client * parallel,
            "num_gpus": gpus,
            "include_dashboard": False,  # no web server, no port opened
            "logging_level": logging.INFO if options.verbose else logging.ERROR,
            "log_to_driver": options.verbose,
        },
    }


def simulate(
    settings: FlSettings,
    options: SimulationOptions = SimulationOptions(),
    on_round: Optional[Callable[[RoundRecord], None]] = None,
    corpus_engine: str = "auto",
    fleet: Optional[FleetOptions] = None,
) -> Path:
    """Run every round; returns the folder holding rounds.csv, clients.csv and run.json (and fleet.json)."""
    from w2vprof.fl import require_flwr

    require_flwr()
    resources = backend_config(settings, options)  # first: no GPU for device cuda fails before any work
    priced = _price_fleet(settings, fleet)  # a bad fleet or results file fails before a corpus is generated
    if settings.synthetic:
        from w2vprof.fl.data import prepare_synthetic

        settings = prepare_synthetic(settings, corpus_engine)
    check_partitions(settings)
    plan = _with_mixes(settings, *priced) if priced else None
    import flwr.simulation

    if not settings.threads:
        # Each actor would otherwise start torch with every core of the machine, oversubscribing them.
        cpus = options.cpus or os.cpu_count() or 1
        settings = settings.replace(threads=max(1, cpus // max(1, min(options.parallel, settings.clients))))
    flwr_logger = logging.getLogger("flwr")
    previous_level = flwr_logger.level
    if not options.verbose:
        # Flower's round logs, its note that client-side evaluation is off (validation runs on the server) and
        # run_simulation's deprecation notice would bury our one line per round.
        flwr_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            if not options.verbose:
                warnings.simplefilter("ignore", FutureWarning)  # Ray's notes on future defaults
            _run(flwr, settings, options, resources, on_round, plan)
    finally:
        flwr_logger.setLevel(previous_level)
    return Path(settings.out_dir)


def _price_fleet(settings: FlSettings, options: Optional[FleetOptions]) -> Optional[tuple[FleetRun, FleetInputs]]:
    """(the fleet priced with a line per client, the files it came from), or None without a fleet."""
    if options is None:
        return None
    from w2vprof.fl.virtual_fleet import plan_fleet, read_fleet_inputs

    inputs = read_fleet_inputs(options)
    return plan_fleet(inputs, settings), inputs


def _with_mixes(settings: FlSettings, plan: FleetRun, inputs: FleetInputs) -> FleetRun:
    """The fleet estimate's days to train per fleet mix, at the partitions' size (known once they exist)."""
    from w2vprof.fl.virtual_fleet import estimate_mixes, mean_partition_size

    return estimate_mixes(plan, inputs, settings, mean_partition_size(settings))


def _run(
    flwr, settings: FlSettings, options: SimulationOptions, resources: dict, on_round, fleet: Optional[FleetRun]
) -> None:
    from w2vprof.fl.client_app import app as client_app
    from w2vprof.fl.server_app import make_server_app

    flwr.simulation.run_simulation(
        server_app=make_server_app(settings, on_round, fleet),
        client_app=client_app,
        num_supernodes=settings.clients,
        backend_config=resources,
        verbose_logging=options.verbose,
    )
