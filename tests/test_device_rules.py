"""The training step keeps the rules of the devices it runs on, checked on the CPU with dispatch modes.

- MPS has no float64: nothing in a step or a profile may make or use a float64 tensor (issue 16: every MPS
  configuration failed on `.double()` in the length statistics and the span mask).
- A GPU step must not wait for the device: the model's own code reads no tensor value into Python (the update
  count, the padding check, the real-frame count and the mask sizes are all known on the host).
"""

from __future__ import annotations

import traceback
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from w2vprof.models import build_model
from w2vprof.workload import Batch

MODELS_DIR = str(Path(__file__).resolve().parents[1] / "src" / "w2vprof" / "models")


class RefuseFloat64(TorchDispatchMode):
    """MPS's dtype rule on the CPU: any op that takes, makes or returns a float64 tensor raises TypeError."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self._check(func, (args, kwargs), "takes")
        out = func(*args, **kwargs)
        self._check(func, out, "returns")
        return out

    @staticmethod
    def _check(func, value, verb: str) -> None:
        for item in tree_flatten(value)[0]:
            if item is torch.float64 or (isinstance(item, torch.Tensor) and item.dtype == torch.float64):
                raise TypeError(f"{func} {verb} float64, which MPS does not support")


class ValueReads(TorchDispatchMode):
    """Counts reads of a tensor's value into Python (a host wait on a GPU), by the source file that asked."""

    def __init__(self) -> None:
        super().__init__()
        self.by_file: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            callers = traceback.extract_stack()[:-1]  # without this method's own frame
            frames = [f.filename for f in callers if "torch" not in Path(f.filename).parts]
            self.by_file[frames[-1] if frames else "?"] += 1
        return func(*args, **(kwargs or {}))

    def from_models(self) -> int:
        return sum(n for file, n in self.by_file.items() if file.startswith(MODELS_DIR))


def padded_batch() -> Batch:
    """Two utterances, one padded: the padding check, the attention mask and the masking all see real lengths."""
    return Batch(torch.randn(2, 16000), torch.tensor([16000, 12000]))


def test_refuse_float64_catches_what_mps_refuses():
    with RefuseFloat64(), pytest.raises(TypeError, match="float64"):
        torch.arange(4).double()
    with RefuseFloat64(), pytest.raises(TypeError, match="float64"):
        torch.zeros(2, dtype=torch.float64)


@pytest.mark.integration
def test_a_training_step_makes_no_float64_tensor(tiny_training_step):
    step, batch = tiny_training_step, padded_batch()
    with RefuseFloat64():
        output = step(batch)
    assert torch.isfinite(output.loss) and step.model.num_updates == 1


@pytest.mark.integration
def test_a_tiny_profile_makes_no_float64_tensor():
    from w2vprof.measure.engine import ProfileConfig, profile_configuration

    config = ProfileConfig(model="tiny", batch=2, seconds=1.0, repeats=1, device="cpu", telemetry=False)
    with RefuseFloat64():
        result = profile_configuration(config)
    assert result.record.status == "ok", result.record.error
    assert result.record.utt_sec_mean == 1.0 and result.record.fwd_flops > 0


@pytest.mark.integration
def test_the_model_reads_no_tensor_value_in_a_step(tiny_training_step):
    step, batch = tiny_training_step, padded_batch()
    with ValueReads() as reads:
        output = step(batch)
    # Before: 6 reads per step (update count twice, padding check, real-frame count, two mask sizes).
    assert reads.from_models() == 0, dict(reads.by_file)
    assert output.num_frames == 49 + 37 and output.num_masked == 2 * int(output.mask[0].sum())


@pytest.mark.integration
def test_lengths_on_the_host_or_with_the_batch_give_the_same_step():
    """Host lengths (numpy, list) and tensor lengths are one computation: same loss, mask and counts."""
    import numpy as np

    results = []
    for lengths in (torch.tensor([16000, 12000]), np.array([16000, 12000]), [16000, 12000]):
        torch.manual_seed(3)
        model = build_model("tiny").eval()
        output = model(torch.randn(2, 16000), lengths)
        results.append((float(output.loss.detach()), output.mask.clone(), output.num_masked, output.num_frames))
    for loss, mask, masked, frames in results[1:]:
        assert loss == results[0][0] and torch.equal(mask, results[0][1])
        assert (masked, frames) == results[0][2:]


def test_update_count_travels_with_the_state_dict():
    model = build_model("tiny")
    model.step_schedule()
    model.step_schedule()
    state = model.state_dict()
    assert state["num_updates"].dtype == torch.int64 and int(state["num_updates"]) == 2
    assert list(state)[:2] == ["mask_embedding", "num_updates"]  # where the buffer used to be
    fresh = build_model("tiny")
    fresh.load_state_dict(state)
    assert fresh.num_updates == 2 and fresh.temperature == model.temperature
    del state["num_updates"]
    with pytest.raises(RuntimeError, match="num_updates"):
        fresh.load_state_dict(state)


def test_length_stats_are_exact_host_arithmetic():
    from w2vprof.workload import length_stats

    batch = Batch(torch.zeros(3, 48000), torch.tensor([16000, 32000, 48000]))
    with RefuseFloat64():
        stats = length_stats([batch])
    # p90: rank 0.9 * 2 = 1.8 -> 2 s + 0.8 * (3 s - 2 s); padding: 144000 samples hold 96000 real ones
    assert stats == {
        "utt_sec_mean": 2.0,
        "utt_sec_median": 2.0,
        "utt_sec_p90": pytest.approx(2.8, abs=1e-15),
        "utt_sec_max": 3.0,
        "padding_fraction": pytest.approx(1 / 3, abs=1e-15),
    }


def test_host_tensors_reach_a_gpu_from_pinned_memory_without_waiting():
    from w2vprof.models.pretraining import to_device_without_waiting

    calls = []

    class FakeHostTensor:
        def pin_memory(self):
            calls.append("pin_memory")
            return self

        def to(self, device, non_blocking=False):
            calls.append(("to", str(device), non_blocking))
            return self

    to_device_without_waiting(FakeHostTensor(), torch.device("cuda"))
    assert calls == ["pin_memory", ("to", "cuda", True)]
    on_cpu = torch.ones(3)
    assert to_device_without_waiting(on_cpu, torch.device("cpu")) is on_cpu
