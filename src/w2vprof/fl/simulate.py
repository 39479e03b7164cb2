"""`w2vprof fl simulate`: Flower's simulation engine (Ray) on this machine, one virtual SuperNode per client.

The ServerApp runs in this process; ClientApps run in Ray actor processes, `parallel` at a time. By default one
client trains at a time with every core, so a client's seconds are what one device alone would take (clients
training side by side share cores and memory bandwidth and would each look slower).
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from w2vprof.errors import BadInput
from w2vprof.fl.records import RoundRecord
from w2vprof.fl.settings import FlSettings

__all__ = ["SimulationOptions", "check_partitions", "simulate", "backend_config"]


@dataclass(frozen=True)
class SimulationOptions:
    parallel: int = 1  # clients training at the same time (Ray actors)
    cpus: int = 0  # cores given to Ray; 0: all of this machine's
    gpus_per_client: float = 0.0  # fraction of a GPU per client (with --device cuda)
    verbose: bool = False  # Flower's and Ray's own INFO logs


def check_partitions(settings: FlSettings) -> None:
    """Fail before Ray starts: a partition per client and a held-out set must exist."""
    from w2vprof.fl.data import client_entries, validation_source

    entries = client_entries(Path(settings.partitions))
    if len(entries) < settings.clients:
        raise BadInput(
            f"--partitions {settings.partitions} holds {len(entries)} client partitions; --clients is {settings.clients}"
        )
    if not validation_source(settings).exists():
        raise BadInput(f"--validation {validation_source(settings)}: no such file or folder")


def backend_config(settings: FlSettings, options: SimulationOptions) -> dict:
    cpus = options.cpus or os.cpu_count() or 1
    parallel = max(1, min(options.parallel, settings.clients))
    cpus_per_client = max(1, cpus // parallel)
    return {
        "client_resources": {"num_cpus": cpus_per_client, "num_gpus": options.gpus_per_client},
        "init_args": {
            "num_cpus": cpus_per_client * parallel,
            "num_gpus": 1 if options.gpus_per_client else 0,
            "include_dashboard": False,  # no web server, no port opened
            "logging_level": logging.INFO if options.verbose else logging.ERROR,
            "log_to_driver": options.verbose,
        },
    }


def simulate(
    settings: FlSettings, options: SimulationOptions = SimulationOptions(),
    on_round: Optional[Callable[[RoundRecord], None]] = None, corpus_engine: str = "auto",
) -> Path:
    """Run every round; returns the folder holding rounds.csv, clients.csv and run.json."""
    from w2vprof.fl import require_flwr

    require_flwr()
    if settings.synthetic:
        from w2vprof.fl.data import prepare_synthetic

        settings = prepare_synthetic(settings, corpus_engine)
    check_partitions(settings)
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
            _run(flwr, settings, options, on_round)
    finally:
        flwr_logger.setLevel(previous_level)
    return Path(settings.out_dir)


def _run(flwr, settings: FlSettings, options: SimulationOptions, on_round) -> None:
    from w2vprof.fl.client_app import app as client_app
    from w2vprof.fl.server_app import make_server_app

    flwr.simulation.run_simulation(
        server_app=make_server_app(settings, on_round),
        client_app=client_app,
        num_supernodes=settings.clients,
        backend_config=backend_config(settings, options),
        verbose_logging=options.verbose,
    )
