"""The Flower ServerApp: sample clients, aggregate their updates, validate, write rounds.csv and clients.csv.

`app` is the component a deployment names (`w2vprof.fl.server_app:app`); it reads its settings from the Flower
app's run config (the pyproject `w2vprof fl deploy-config` writes). `make_server_app` bakes settings in for the
simulation engine, which runs the ServerApp in this process.
"""

from __future__ import annotations

import json
import platform
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

from w2vprof.files import write_text_atomic
from w2vprof.fl import flwr_version, require_flwr

require_flwr()

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from w2vprof.fl.records import FleetRun, RoundRecord, write_fleet_json
from w2vprof.fl.settings import FlSettings

__all__ = ["app", "make_server_app", "run_federation", "RESULT_FILES"]

from w2vprof.fl.records import RESULT_FILES  # re-exported

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    run_federation(grid, FlSettings.from_config(context.run_config))


def make_server_app(
    settings: FlSettings,
    on_round: Optional[Callable[[RoundRecord], None]] = None,
    fleet: Optional[FleetRun] = None,
) -> ServerApp:
    server = ServerApp()

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        run_federation(grid, settings, on_round, fleet)

    return server


def run_federation(
    grid: Grid,
    settings: FlSettings,
    on_round: Optional[Callable[[RoundRecord], None]] = None,
    fleet: Optional[FleetRun] = None,
) -> Path:
    """All rounds of one run; results go to settings.out_dir (created; existing results are never overwritten).

    `fleet`: the simulated clients stand for the devices of a fleet (fleet.json; see virtual_fleet.py)."""
    import torch

    from w2vprof.fl.data import validation_utterances
    from w2vprof.fl.records import check_new_run_folder
    from w2vprof.fl.strategy import W2vprofStrategy
    from w2vprof.fl.task import build_fl_model, torch_device, validation_batches

    out = Path(settings.out_dir or ".").resolve()
    check_new_run_folder(out)  # BadInput, the same check `w2vprof fl` makes before starting
    out.mkdir(parents=True, exist_ok=True)
    # Client sampling uses Python's random (flwr's sample_nodes): seeded for a reproducible schedule.
    random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    model = build_fl_model(settings).to(torch_device(settings.device))
    validation = validation_batches(validation_utterances(settings), settings)
    write_run_json(out, settings)
    if fleet is not None:
        write_fleet_json(out, fleet)
    strategy = W2vprofStrategy(settings, out, model, validation, on_round, fleet)
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord({k: v.detach().cpu() for k, v in model.state_dict().items()}),
        num_rounds=settings.rounds,
        timeout=settings.round_timeout,
        train_config=ConfigRecord(settings.to_config()),
        evaluate_fn=strategy.evaluate,
    )
    return out


def write_run_json(out: Path, settings: FlSettings) -> None:
    import torch

    run = {
        "command": "fl",
        "settings": asdict(settings),
        "flwr_version": flwr_version(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "machine": platform.machine(),
        "started_unix": time.time(),
    }
    write_text_atomic(out / "run.json", json.dumps(run, indent=2) + "\n")
