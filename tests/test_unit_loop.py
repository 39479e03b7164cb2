"""The unit loop (`-m "not integration"`) trains nothing: conftest refuses a training step in a test without the
integration mark, and leaves it alone in one with the mark."""

from __future__ import annotations

import pytest

from w2vprof.measure.step import TrainingStep


def test_a_test_without_the_integration_mark_cannot_train():
    with pytest.raises(pytest.fail.Exception, match=r"test_unit_loop\.py::.* trains a model .* mark it integration"):
        TrainingStep.__call__(object(), object())


@pytest.mark.integration
def test_an_integration_test_trains_with_the_real_step():
    assert TrainingStep.__call__.__module__ == "w2vprof.measure.step"
