"""FLOP formulas: one attention convention on every device, checked against the arithmetic."""

from __future__ import annotations

import pytest
import torch

from w2vprof.measure.flops import (
    KERNEL_ATTENTION_OPS,
    SDPA_BACKWARD_OPS,
    SDPA_FORWARD_OPS,
    count_flops,
    flop_formulas,
    formula_registry,
)

# GQA-free self-attention shapes (b, h, s, d) with Sq != Sk and d != dv, so a swapped size shows.
B, H, SQ, SK, D, DV = 2, 3, 5, 7, 4, 6
FORWARD = 2 * B * H * SQ * SK * D + 2 * B * H * SQ * SK * DV  # QK^T and AV
BACKWARD = 2 * FORWARD  # grad of scores, V, Q and K; no recomputation


def available(names):
    return [name for name in names if hasattr(torch.ops.aten, name)]


@pytest.mark.parametrize("name", available(SDPA_FORWARD_OPS))
def test_every_fused_attention_forward_counts_qk_and_av(name):
    registry = formula_registry()
    formula = registry[getattr(torch.ops.aten, name)]
    q, k, v = (B, H, SQ, D), (B, H, SK, D), (B, H, SK, DV)
    assert formula(*(torch.empty(s, device="meta") for s in (q, k, v)), out_val=None) == FORWARD


@pytest.mark.parametrize("name", available(SDPA_BACKWARD_OPS))
def test_every_fused_attention_backward_counts_four_matmuls(name):
    """The CPU kernel and each CUDA kernel (flash, memory-efficient, cuDNN) agree: same shapes, same bwd FLOPs."""
    registry = formula_registry()
    formula = registry[getattr(torch.ops.aten, name)]
    shapes = (B, H, SQ, DV), (B, H, SQ, D), (B, H, SK, D), (B, H, SK, DV)  # grad_out, q, k, v
    assert formula(*(torch.empty(s, device="meta") for s in shapes), out_val=None) == BACKWARD


KERNEL_ARGS = {  # the arguments between the tensors, for dense (b, s, h, d) batches
    "_flash_attention_forward": lambda g, q, k, v: (q, k, v, None, None, SQ, SK),
    "_flash_attention_backward": lambda g, q, k, v: (g, q, k, v, g, None, None, None, SQ, SK),
    "_efficient_attention_forward": lambda g, q, k, v: (q, k, v, None, None, None, SQ, SK),
    "_efficient_attention_backward": lambda g, q, k, v: (g, q, k, v, None, g, None, None, SQ, SK),
}


@pytest.mark.parametrize("name", [n for n in KERNEL_ATTENTION_OPS if hasattr(torch.ops.aten, n)])
def test_kernel_level_attention_reads_its_own_layout(name):
    formula = formula_registry()[getattr(torch.ops.aten, name)]
    shapes = (B, SQ, H, DV), (B, SQ, H, D), (B, SK, H, D), (B, SK, H, DV)  # grad_out, q, k, v as (b, s, h, d)
    args = KERNEL_ARGS[name](*(torch.empty(s, device="meta") for s in shapes))
    assert formula(*args, out_val=None) == (BACKWARD if name.endswith("backward") else FORWARD)


def test_packed_sequences_count_each_sequence():
    """Variable-length batches (cum_seq offsets): per-sequence Sq * Sk, backward twice the forward."""
    formula = formula_registry()[torch.ops.aten._flash_attention_backward]
    lengths = [3, 5]
    offsets = torch.tensor([0, 3, 8], dtype=torch.int32)
    q, k, v = (torch.empty(8, H, width) for width in (D, D, DV))
    grad = torch.empty(8, H, DV)
    flops = formula(grad, q, k, v, grad, None, offsets, offsets, 5, 5, out_val=None)
    assert flops == sum(2 * (2 * H * n * n * D + 2 * H * n * n * DV) for n in lengths)


def test_the_counter_uses_our_attention_formulas():
    from torch.utils.flop_counter import FlopCounterMode

    ours = flop_formulas()
    mode = FlopCounterMode(display=False, custom_mapping=ours)
    for name in available(SDPA_BACKWARD_OPS):
        op = getattr(torch.ops.aten, name)
        assert getattr(mode.flop_registry[op], "__wrapped__", None) is ours[op], name


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_cpu_attention_counts_the_arithmetic(dropout):
    """dropout 0: the fused CPU kernel (our formula); dropout > 0: torch's math path (its batched matmuls)."""
    torch.manual_seed(0)
    q = torch.randn(B, H, SQ, D, requires_grad=True)
    k = torch.randn(B, H, SK, D, requires_grad=True)
    v = torch.randn(B, H, SK, DV, requires_grad=True)
    with count_flops() as counter:
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        forward = counter.snapshot()
        out.sum().backward()
        both = counter.snapshot()
    assert forward.total == FORWARD
    assert both.minus(forward).total == BACKWARD
