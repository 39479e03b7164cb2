"""Federated wav2vec 2.0 pretraining on Flower (optional extra `w2vprof[fl]`), every client measured per round.

Flower is imported only through `require_flwr()`, which first switches off what would reach the network
(Flower telemetry and update checks, Ray usage stats), so the core profiler never needs flwr and an
offline device never waits on a connection.
"""

from __future__ import annotations

import os

from w2vprof.errors import BadInput

__all__ = ["OFFLINE_ENVIRONMENT", "offline_environment", "require_flwr", "flwr_version"]

#: Set (unless the user set them) before flwr or ray is imported: both read them at import time.
OFFLINE_ENVIRONMENT: dict[str, str] = {
    "FLWR_TELEMETRY_ENABLED": "0",  # Flower's anonymous usage events (flwr.supercore.telemetry)
    "FLWR_DISABLE_UPDATE_CHECK": "1",  # flower-superlink / flower-supernode ask flower.ai for a newer version
    "RAY_USAGE_STATS_ENABLED": "0",  # Ray's usage report at ray.init
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
}


def offline_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: os.environ) with the offline settings added where the user has not chosen otherwise."""
    environment = dict(os.environ if base is None else base)
    for name, value in OFFLINE_ENVIRONMENT.items():
        environment.setdefault(name, value)
    return environment


def require_flwr():
    """Import flwr with telemetry and update checks off; a one-line BadInput when the extra is missing."""
    for name, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    try:
        import flwr
    except ImportError:
        raise BadInput("federated training needs Flower: pip install 'w2vprof[fl]'") from None
    return flwr


def flwr_version() -> str:
    return str(getattr(require_flwr(), "__version__", "unknown"))
