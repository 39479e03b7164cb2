"""Synthetic length distributions (--length-dist): parsing, names, bounds, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from w2vprof.errors import SettingError
from w2vprof.workload import (
    LengthDistributionWorkload,
    SyntheticWorkload,
    length_stats,
    make_workload,
    parse_length_dist,
    workload_name,
)


def test_parse_defaults_and_labels():
    d = parse_length_dist("normal:5.5,2")
    assert (d.kind, d.mean, d.std, d.min_sec, d.max_sec) == ("normal", 5.5, 2.0, 1.0, 16.5)  # 1 s .. 3 x 5.5
    assert d.label == "normal(5.5,2.0)"
    assert parse_length_dist("normal:0.8,0.2").min_sec == 0.4  # min(1 s, mean / 2)
    assert parse_length_dist("normal:5.5,2.0,2,10").label == "normal(5.5,2.0,2.0,10.0)"
    assert parse_length_dist("lognormal:5.5,2.0").label == "lognormal(5.5,2.0)"
    assert parse_length_dist("uniform:2,8").label == "uniform(2.0,8.0)"


@pytest.mark.parametrize(
    "text",
    [
        "normal",
        "normal:5",
        "normal:a,b",
        "gamma:1,2",
        "normal:-1,2",
        "normal:5,-1",
        "normal:5,1,6,9",
        "uniform:3,2",
        "uniform:1",
        "normal:nan,1",
        "normal:5,1,1",
    ],
)
def test_bad_specs_are_bad_input(text):
    with pytest.raises(SettingError, match="^length_dist "):
        parse_length_dist(text)


def test_name_matches_the_workload_column():
    workload = make_workload(5.0, length_dist="normal:5.5,2.0")
    assert isinstance(workload, LengthDistributionWorkload)
    assert workload.name == "synthetic:normal(5.5,2.0)" == workload_name(length_dist="normal:5.5,2.0")
    assert workload_name() == "synthetic" == make_workload(5.0).name
    assert isinstance(make_workload(5.0), SyntheticWorkload)


@pytest.mark.parametrize("spec, mean", [("normal:5.5,2.0", 5.56), ("lognormal:5.5,2.0", 5.5), ("uniform:2,8", 5.0)])
def test_lengths_follow_the_distribution_within_bounds(spec, mean):
    d = parse_length_dist(spec)
    seconds = d.sample(np.random.default_rng(1), 2000)
    assert seconds.min() >= d.min_sec and seconds.max() <= d.max_sec
    # 2000 draws: standard error 2 / sqrt(2000) = 0.045 s. The normal truncated at 1 s (-2.25 sd) has its
    # mean raised by 2 * pdf(2.25) / cdf(2.25) = 0.064 s.
    assert abs(float(seconds.mean()) - mean) < 0.15
    assert abs(float(seconds.std()) - (6 / 12**0.5 if spec.startswith("uniform") else 2.0)) < 0.2
    # The batches carry those lengths (rounded to samples) and pad to the longest.
    workload = make_workload(5.0, length_dist=spec)
    batches = [b for b, _ in zip(workload.batches(8, seed=1), range(3))]
    lengths = torch.cat([b.lengths for b in batches]).double() / 16_000
    assert float(lengths.min()) >= d.min_sec - 1 / 16_000 and float(lengths.max()) <= d.max_sec + 1 / 16_000
    assert 0.05 < length_stats(batches)["padding_fraction"] < 0.8


def test_batches_are_padded_masked_seeded_and_different():
    workload = make_workload(5.0, length_dist="normal:3,1")
    first, second = [b for b, _ in zip(workload.batches(4, seed=0), range(2))]
    for batch in (first, second):
        mask = batch.attention_mask()
        assert batch.waveforms.shape == (4, int(batch.lengths.max()))
        assert torch.all(batch.waveforms[~mask] == 0) and torch.all(batch.waveforms[mask] != 0)
    assert not torch.equal(first.lengths, second.lengths)
    again = next(make_workload(5.0, length_dist="normal:3,1").batches(4, seed=0))
    assert torch.equal(again.waveforms, first.waveforms)


def test_max_seconds_caps_lengths_and_zero_std_is_fixed():
    capped = make_workload(5.0, length_dist="uniform:2,8", max_seconds=4.0)
    lengths = torch.cat([b.lengths for b, _ in zip(capped.batches(16, 0), range(5))])
    assert int(lengths.max()) == 64_000 and int(lengths.min()) >= 32_000  # 4 s x 16000, 2 s x 16000
    fixed = next(make_workload(5.0, length_dist="normal:2.5,0").batches(3, 0))
    assert fixed.lengths.tolist() == [40_000] * 3
    assert length_stats([fixed])["padding_fraction"] == 0.0


def test_sampling_stays_in_bounds_when_they_hold_little_of_the_distribution():
    d = parse_length_dist("normal:5,0.01,4.999,5.0")
    values = d.sample(np.random.default_rng(0), 100)
    assert values.shape == (100,) and values.min() >= 4.999 and values.max() <= 5.0
