"""The pretraining objective is right: checked on the tiny model (and base where cheap)."""

from __future__ import annotations

import math

import pytest
import torch

from w2vprof.models import build_model
from w2vprof.models.objective import compute_span_mask, sample_negative_indices
from w2vprof.workload import Batch


@pytest.mark.integration
def test_untrained_contrastive_loss_is_near_ln_101():
    torch.manual_seed(0)
    model = build_model("base", dropout=0.0, attention_dropout=0.0).train()
    output = model(torch.randn(1, 32000))
    # 100 distractors + 1 positive, all alike to an untrained model: CE = ln(101) = 4.615 per masked frame.
    assert output.contrastive_loss.item() == pytest.approx(math.log(101), abs=0.15)
    # NB: not on tiny: its 32-d contrastive space gives random cosines a spread of 1/sqrt(32), which
    # (divided by the 0.1 temperature) lifts an untrained CE well above ln(101).


def test_about_half_the_frames_are_masked():
    torch.manual_seed(0)
    # base's batch of 4 x 5.5 s = 274 frames each, over 50 batches.
    lengths = torch.full((4,), 274)
    masks = [compute_span_mask(lengths, 274, mask_prob=0.65, span=10, min_spans=2) for _ in range(50)]
    share = torch.stack(masks).float().mean().item()
    # Overlapping spans cover 1 - exp(-0.65) = 0.478 of the frames; trimming every row to the smallest row's
    # count (same masked count per row, as fairseq) takes a little off: "about half".
    assert 0.40 < share < 0.50
    assert all(len(set(m.sum(dim=1).tolist())) == 1 for m in masks)  # the same masked count in every row


def test_padded_rows_mask_only_real_frames():
    torch.manual_seed(1)
    lengths = torch.tensor([200, 120, 50, 200])
    mask = compute_span_mask(lengths, 200, mask_prob=0.65, span=10, min_spans=2)
    frame = torch.arange(200)[None, :]
    assert not (mask & (frame >= lengths[:, None])).any()
    assert len(set(mask.sum(dim=1).tolist())) == 1


def test_a_positive_never_appears_among_its_own_distractors():
    torch.manual_seed(0)
    indices = sample_negative_indices(batch=3, masked=7, num_negatives=100, device=torch.device("cpu"))
    own = torch.arange(7)[None, :, None]
    assert indices.shape == (3, 7, 100)
    assert not (indices == own).any()
    assert indices.min() >= 0 and indices.max() <= 6
    # every other frame does get drawn: the shift covers [0, M) minus self
    assert set(indices[0, 3].tolist()) == {0, 1, 2, 4, 5, 6}


@pytest.mark.integration
def test_gradients_reach_conv_stack_codebook_and_mask_embedding():
    torch.manual_seed(0)
    model = build_model("tiny").train()
    output = model(torch.randn(2, 24000))
    output.loss.backward()
    for name in (
        "feature_extractor.conv_layers.0.conv.weight",
        "quantizer.codevectors",
        "quantizer.weight_proj.weight",
        "mask_embedding",
        "transformer.layers.1.feed_forward.output_dense.weight",
    ):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.integration
def test_padded_batch_scores_only_real_frames():
    torch.manual_seed(0)
    model = build_model("tiny").eval()  # eval: no dropout, so two passes are comparable
    waveforms = torch.randn(2, 32000)
    lengths = torch.tensor([32000, 16000])
    waveforms[1, 16000:] = 0.0
    output = model(waveforms, lengths)
    frames = output.mask.shape[1]
    # 16000 samples -> 49 frames: nothing beyond the real frames is masked (and so scored)
    assert not output.mask[1, 49:].any()
    assert output.num_frames == 99 + 49
    assert output.num_masked == 2 * int(output.mask[0].sum())
    assert frames == 99


@pytest.mark.integration
def test_tiny_training_step_updates_every_parameter_group(tiny_training_step):
    step = tiny_training_step
    model = step.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = Batch(torch.randn(2, 16000), torch.tensor([16000, 16000]))
    output = step(batch)
    assert torch.isfinite(output.loss)
    assert int(model.num_updates) == 1
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p)]
    assert len(changed) == len(before)
    assert all(p.grad is None for p in model.parameters())  # zero_grad(set_to_none) ran


def test_temperature_schedule():
    model = build_model("tiny")
    assert model.temperature == pytest.approx(2.0)
    model.num_updates += 1000
    assert model.temperature == pytest.approx(2.0 * 0.999995**1000)
    model.num_updates += 10_000_000
    assert model.temperature == pytest.approx(0.5)
