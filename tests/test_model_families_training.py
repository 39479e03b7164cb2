"""One training step of each tiny model through the model-family interface: pretraining and CTC, on a padded
batch, with a user's own family beside the built-in ones. Tiny models only.

Integration tests, as every test that trains (conftest.INTEGRATION's rule): they run in the full suite, not in the
unit loop. NB: marked here rather than in conftest.INTEGRATION, which this change does not own.
"""

from __future__ import annotations

import math

import pytest

from w2vprof.models import CTC, OBJECTIVE, PRETRAIN, get_family, make_options

pytestmark = pytest.mark.integration

TINY = [(name, objective) for name in ("tiny", "hubert-tiny", "wavlm-tiny") for objective in (PRETRAIN, CTC)]
TINY += [("model_family_example:conformer_family", CTC)]


def _padded_batch():
    import torch

    from w2vprof.workload import Batch

    generator = torch.Generator().manual_seed(3)
    waveforms = torch.randn(2, 16_000, generator=generator)
    waveforms[1, 11_000:] = 0.0
    return Batch(waveforms, torch.tensor([16_000, 11_000]))


@pytest.mark.parametrize(("name", "objective"), TINY, ids=[f"{n}-{o}" for n, o in TINY])
def test_one_step_of_every_tiny_model_has_a_finite_loss_and_every_gradient(name, objective):
    import torch

    family = get_family(name)
    torch.manual_seed(0)
    model = family.build(objective, make_options(vocab=28)).train()
    batch = _padded_batch()
    targets = family.make_targets(batch, model, torch.Generator().manual_seed(1))
    output = family.loss(model, batch, targets)
    assert output.loss.dim() == 0 and math.isfinite(float(output.loss))
    assert all(math.isfinite(float(part)) and not part.requires_grad for part in output.parts.values())
    assert output.count >= 1
    output.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    optimizer = torch.optim.AdamW(model.parameters(), **_adamw(family.optimizer_settings(model)))
    optimizer.step()
    family.after_update(model)
    assert family.layers(model)[-1].name == OBJECTIVE


def _adamw(settings):
    return {"lr": settings.lr, "betas": settings.betas, "eps": settings.eps, "weight_decay": settings.weight_decay}


@pytest.mark.parametrize("name", ["hubert-tiny", "wavlm-tiny"])
def test_masked_prediction_starts_near_ln_clusters_and_learns_its_targets(name):
    """An untrained model scores every cluster alike (masked CE near ln C); a few steps on fixed targets lower it,
    so the loss really depends on the targets."""
    import torch

    family = get_family(name)
    torch.manual_seed(0)
    model = family.build(PRETRAIN, make_options(clusters=20)).train()
    batch = _padded_batch()
    targets = family.make_targets(batch, model, torch.Generator().manual_seed(1))
    first = family.loss(model, batch, targets)
    assert abs(float(first.parts["masked"]) - math.log(20)) < 1.0
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        torch.manual_seed(5)  # the same masks each step
        output = family.loss(model, batch, targets)
        output.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    torch.manual_seed(5)
    assert float(family.loss(model, batch, targets).parts["masked"]) < float(first.parts["masked"]) - 0.1


def test_masked_prediction_needs_one_target_per_frame():
    import torch

    family = get_family("hubert-tiny")
    model = family.build(PRETRAIN)
    batch = _padded_batch()
    with pytest.raises(ValueError, match="one cluster id per frame"):
        family.loss(model, batch, torch.zeros(2, 3, dtype=torch.long))


def test_the_unmasked_frames_are_scored_but_not_trained():
    """fairseq and torchaudio score the unmasked frames too (skip_nomask false) with weight 0: their loss is
    reported and sends no gradient."""
    import torch

    family = get_family("hubert-tiny")
    torch.manual_seed(0)
    model = family.build(PRETRAIN)
    batch = _padded_batch()
    targets = family.make_targets(batch, model, torch.Generator().manual_seed(1))
    output = family.loss(model, batch, targets)
    parts = output.parts
    assert float(output.loss) == pytest.approx(float(parts["masked"]) + 10.0 * float(parts["feature_penalty"]))
    assert float(parts["unmasked"]) > 0 and not parts["unmasked"].requires_grad


def test_wavlm_hides_padded_frames_like_a_shorter_batch():
    """WavLM's key padding: the real frames of a padded utterance see what they would see alone."""
    import torch

    from w2vprof.models.config import frames_for_samples

    family = get_family("wavlm-tiny")
    torch.manual_seed(0)
    model = family.build(CTC).eval()
    batch = _padded_batch()
    with torch.no_grad():
        features, frame_lengths, real = model._features(batch.waveforms, batch.lengths)
        x = model.feature_projection(features) * real.unsqueeze(-1)
        together = model._encode(x, real, padded=True)
        frames = int(frames_for_samples(11_000, model.config.conv_layers))
        alone = model._encode(x[1:, :frames], real[1:, :frames], padded=False)
    assert frame_lengths.tolist()[1] == frames
    torch.testing.assert_close(together[1, :frames], alone[0], rtol=1e-4, atol=1e-4)
