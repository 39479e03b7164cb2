"""What `fl simulate` asks Ray for: cores and, with --device cuda, a share of a GPU per client (no GPU needed)."""

from __future__ import annotations

import pytest

from w2vprof.errors import BadInput
from w2vprof.fl import simulate
from w2vprof.fl.settings import FlSettings
from w2vprof.fl.simulate import SimulationOptions, backend_config


def _gpu_shares(device: str, parallel: int = 1, visible_gpus: int = 1, gpus_per_client: float = 0.0):
    config = backend_config(
        FlSettings(device=device, clients=4),
        SimulationOptions(parallel=parallel, cpus=8, gpus_per_client=gpus_per_client),
        visible_gpus=visible_gpus,
    )
    return config["client_resources"]["num_gpus"], config["init_args"]["num_gpus"]


def test_cuda_clients_get_the_gpu_ray_would_otherwise_hide(monkeypatch):
    # Ray sets CUDA_VISIBLE_DEVICES of an actor to the GPUs it was given: 0 GPUs = a client that cannot see CUDA.
    monkeypatch.setattr(simulate, "visible_cuda_gpus", lambda: 1, raising=False)
    config = backend_config(FlSettings(device="cuda", clients=4), SimulationOptions(cpus=8))
    assert config["client_resources"]["num_gpus"] == 1.0
    assert config["init_args"]["num_gpus"] == 1


def test_clients_training_together_share_the_gpus():
    assert _gpu_shares("cuda", parallel=1) == (1.0, 1)
    assert _gpu_shares("cuda", parallel=3) == (pytest.approx(1 / 3), 1)  # three actors on one GPU
    assert _gpu_shares("cuda", parallel=3, visible_gpus=2) == (0.5, 2)  # two on one GPU, one on the other
    assert _gpu_shares("cuda", parallel=2, visible_gpus=4) == (1.0, 4)  # a GPU each, never more than one
    assert _gpu_shares("cuda", parallel=4, gpus_per_client=0.25) == (0.25, 1)  # the caller's share wins


def test_cpu_and_mps_clients_ask_for_no_gpu():
    assert _gpu_shares("cpu", parallel=2) == (0.0, 0)
    assert _gpu_shares("mps", gpus_per_client=0.5) == (0.0, 0)  # Ray schedules NVIDIA GPUs only
    config = backend_config(FlSettings(clients=4), SimulationOptions(parallel=2, cpus=8), visible_gpus=0)
    assert config["client_resources"]["num_cpus"] == 4 and config["init_args"]["num_cpus"] == 8


@pytest.mark.parametrize(
    "visible_gpus, gpus_per_client, fragment",
    [(0, 0.0, "no CUDA GPU"), (1, 1.5, "gpus_per_client"), (1, -0.5, "gpus_per_client"), (1, 2, "more than")],
)
def test_impossible_gpu_requests_are_bad_input(visible_gpus, gpus_per_client, fragment):
    with pytest.raises(BadInput, match=fragment):
        _gpu_shares("cuda", visible_gpus=visible_gpus, gpus_per_client=gpus_per_client)
