"""A client's error reply becomes a clients.csv row classified like every other failure (oom or error, one line)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("flwr")


def _error_reply(node: int, reason: str) -> SimpleNamespace:
    """What aggregate_train reads of a Flower error reply (a real Message needs a running SuperLink's run id)."""
    return SimpleNamespace(
        metadata=SimpleNamespace(src_node_id=node), has_error=lambda: True, error=SimpleNamespace(reason=reason)
    )


def test_error_replies_are_classified_and_written(tmp_path):
    from w2vprof.fl.records import read_clients_csv
    from w2vprof.fl.settings import FlSettings
    from w2vprof.fl.strategy import W2vprofStrategy

    strategy = W2vprofStrategy(FlSettings(clients=2), tmp_path, model=None, validation=[])
    replies = [
        _error_reply(
            11,
            "<class 'flwr.clientapp.client_app.ClientAppException'>:<'\nException ClientAppException "
            "occurred. Message: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`'>",
        ),
        _error_reply(12, "<class 'KeyError'>:<''partition-id''>"),  # str(KeyError("partition-id")) keeps its quotes
    ]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is None  # nothing to average
    rows = {row.node_id: row for row in read_clients_csv(tmp_path / "clients.csv")}
    assert (rows["11"].status, rows["11"].error) == (
        "oom",
        "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    )
    assert (rows["12"].status, rows["12"].error) == ("error", "KeyError: 'partition-id'")
