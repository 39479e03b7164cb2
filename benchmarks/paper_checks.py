"""Measure base (batch 4, 5.5 s, FP32) once and print the figures the paper's Fig. 2 can be held against.

    python benchmarks/paper_checks.py [--repeats 1]

Prints: activation memory vs the paper's 2.54 GB, the layer with the most activation memory, the first
512->512 conv's FLOPs over a transformer layer's (arithmetic: ~3.4x), forward FLOPs over 4x the `summary`
figure (batch 1), backward over forward FLOPs. Takes ~1 minute on a 2-core CPU.
"""

from __future__ import annotations

import argparse

from w2vprof.measure.engine import ProfileConfig, profile_configuration
from w2vprof.measure.summary import summarize

PAPER_PEAK_GB = 2.54


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--model", default="base")
    args = parser.parse_args()
    result = profile_configuration(ProfileConfig(model=args.model, batch=4, seconds=5.5, repeats=args.repeats))
    record, layers = result.record, {row.layer: row for row in result.layers}
    inference = {r.module: r.inference_flops for r in summarize(args.model, 5.5, 1)}["total"]
    top = max(layers.values(), key=lambda row: row.act_mem_bytes)
    act_gb = record.act_mem_bytes / 1e9
    with_params = (record.act_mem_bytes + record.param_bytes) / 1e9
    print(
        f"activation memory (saved for backward): {act_gb:.2f} GB = {act_gb / PAPER_PEAK_GB:.0%} "
        f"of the paper's {PAPER_PEAK_GB} GB"
    )
    print(
        f"  + parameters: {with_params:.2f} GB = {with_params / PAPER_PEAK_GB:.0%}; + grads + AdamW state: "
        f"{(record.act_mem_bytes + record.param_bytes + record.grad_bytes + record.optim_state_bytes) / 1e9:.2f} GB"
    )
    largest_transformer = max(row.act_mem_bytes for n, row in layers.items() if n.startswith("transformer."))
    print(
        f"layer with most activation memory: {top.layer} ({top.act_mem_bytes / 1e6:.0f} MB); "
        f"largest transformer layer: {largest_transformer / 1e6:.0f} MB"
    )
    cnn_vs_transformer = layers["cnn.1"].fwd_flops / layers["transformer.0"].fwd_flops
    print(f"cnn.1 forward FLOPs / transformer.0 forward FLOPs: {cnn_vs_transformer:.2f}x")
    print(f"forward FLOPs / (4 x summary batch-1 FLOPs): {record.fwd_flops / (4 * inference):.4f}")
    print(f"backward / forward FLOPs: {record.bwd_flops / record.fwd_flops:.2f}")
    print(
        f"seconds per batch (median of {record.repeats}): {record.sec_per_batch_median:.2f} s; "
        f"peak RSS {record.peak_mem_bytes / 1e9:.2f} GB"
    )


if __name__ == "__main__":
    main()
