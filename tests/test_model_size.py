"""models.size: parameter bytes counted without weights, and the shortest utterance a model accepts."""

from __future__ import annotations

import pytest

from w2vprof.errors import BadInput
from w2vprof.models.size import FP32_BYTES, check_utterance_length, parameter_bytes, receptive_field_samples


def test_parameter_bytes_on_meta_equal_a_real_models_bytes():
    from w2vprof.models import build_model

    real = sum(p.numel() * p.element_size() for p in build_model("tiny").parameters())
    assert parameter_bytes("tiny") == real
    assert parameter_bytes("tiny", bytes_per_parameter=2) * 2 == real == parameter_bytes("tiny", FP32_BYTES)


def test_parameter_bytes_of_base_matches_its_95_million_parameters():
    assert 95.0e6 * 4 < parameter_bytes("base") < 95.1e6 * 4  # Table 1 of the paper: 95.04 M


def test_receptive_field_follows_the_conv_stack():
    # wav2vec 2.0's 7 blocks (kernel 10 stride 5, 4 x (3, 2), 2 x (2, 2)): 400 samples, 25 ms at 16 kHz
    assert receptive_field_samples("base") == receptive_field_samples("large") == 400


def test_an_utterance_shorter_than_one_frame_is_refused_in_one_line():
    check_utterance_length(0.025, "base")  # exactly one frame
    with pytest.raises(BadInput, match="0.0249 s is shorter than the base conv stack's 400-sample receptive field"):
        check_utterance_length(0.0249, "base")
    with pytest.raises(BadInput, match="unknown model"):
        check_utterance_length(1.0, "huge")
