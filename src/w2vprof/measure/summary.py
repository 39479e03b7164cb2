"""Table 1: parameters and inference FLOPs per module group (or per layer) for any utterance length.

Inference = eval mode, forward only, every module on every frame, no masking (`model.inference`).
NB: the paper's transformer FLOPs (49.16 G for base at 5.5 s) equal the weight layers (linear + positional conv)
alone; the attention products (QK^T and AV: 4*T^2*D per layer, 2.77 G for base at 5.5 s) are not in them. We
report those in their own `attention` row, so the transformer row compares to the paper and `total` is the
whole forward pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from w2vprof.measure.flops import FlopCount, dynamo_left_unimported, subtree_flops
from w2vprof.models.layers import OBJECTIVE, LayerSpec
from w2vprof.models.registry import get_family
from w2vprof.records import ModuleSummaryRow

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from w2vprof.models.family import ModelFamily

__all__ = ["summarize", "summary_rows", "layer_params", "layer_flops", "flops_per_layer"]


def layer_params(model: nn.Module, layer: LayerSpec) -> int:
    total = sum(p.numel() for path in layer.modules for p in model.get_submodule(path).parameters())
    return total + sum(int(getattr(model, name).numel()) for name in layer.parameters)


def layer_flops(count: FlopCount, prefix: str, layer: LayerSpec, attention: bool | None = None) -> int:
    return sum(subtree_flops(count, f"{prefix}.{path}", attention) for path in layer.modules)


def flops_per_layer(count: FlopCount, prefix: str, layers: list[LayerSpec]) -> dict[str, int]:
    """FLOPs of each layer; the objective row gets what no listed module ran, so the rows add up to the total."""
    flops = {layer.name: layer_flops(count, prefix, layer) for layer in layers if layer.name != OBJECTIVE}
    flops[OBJECTIVE] = count.total - sum(flops.values())
    return flops


def summarize(
    model_name: str, seconds: float, batch: int = 1, per_layer: bool = False, objective: Optional[str] = None
) -> list[ModuleSummaryRow]:
    """Table 1 rows for `batch` utterances of `seconds`, counted on the meta device (shapes only, no weights), of
    the model built for `objective` (None: the family's first, pretraining for the built-in models).

    The counter is the one a real pass uses; its formulas depend only on shapes, so the numbers are the real
    pass's (tests/test_summary.py compares them module by module) without its seconds and gigabytes.
    """
    try:
        with dynamo_left_unimported():
            model, count = _count_on_meta(model_name, seconds, batch, objective)
    except (ImportError, AttributeError):  # a torch that wants more of torch._dynamo than its `disable`
        model, count = _count_on_meta(model_name, seconds, batch, objective)
    return summary_rows(model_name, model, count, seconds, batch, per_layer)


def _count_on_meta(
    model_name: str, seconds: float, batch: int, objective: Optional[str] = None
) -> tuple[nn.Module, FlopCount]:
    """The model built on meta and the FLOP count of one inference pass over `batch` utterances of `seconds`."""
    import torch

    from w2vprof.measure.flops import count_flops
    from w2vprof.models.meta import on_meta
    from w2vprof.workload import SAMPLE_RATE, Batch

    family = get_family(model_name)
    samples = int(round(seconds * SAMPLE_RATE))
    with on_meta(), torch.no_grad():
        model = family.build(objective or family.objectives[0]).eval()
        # the lengths on the host, as the workload keeps them (a meta tensor has no values to read)
        lengths = torch.full((batch,), samples, dtype=torch.long, device="cpu")
        with count_flops() as counter:
            family.inference(model, Batch(torch.zeros(batch, samples), lengths))
    return model, counter.snapshot()


def summary_rows(
    model_name: str, model: nn.Module, count: FlopCount, seconds: float, batch: int, per_layer: bool
) -> list[ModuleSummaryRow]:
    """Per-group (or per-layer) rows and the total from one inference pass's FLOP count."""
    family = get_family(model_name)
    layers = family.layers(model)
    rows: list[ModuleSummaryRow] = []
    if per_layer:
        per_layer_flops = flops_per_layer(count, type(model).__name__, layers)
        for layer in layers:
            rows.append(
                ModuleSummaryRow(
                    model_name, layer.name, layer_params(model, layer), per_layer_flops[layer.name], seconds, batch
                )
            )
    else:
        rows.extend(_group_rows(family, model_name, model, count, layers, seconds, batch))
    total_params = sum(p.numel() for p in model.parameters())
    rows.append(ModuleSummaryRow(model_name, "total", total_params, count.total, seconds, batch))
    return rows


def _group_rows(
    family: ModelFamily,
    model_name: str,
    model: nn.Module,
    count: FlopCount,
    layers: list[LayerSpec],
    seconds: float,
    batch: int,
) -> list[ModuleSummaryRow]:
    """Table 1's rows, one per family group; a transformer layer's attention products (QK^T, AV) go to the
    `attention` group, its weight layers to `transformer` (as the paper counts them)."""
    prefix = type(model).__name__
    per_layer_flops = flops_per_layer(count, prefix, layers)
    groups = family.summary_groups(model)
    params, flops = dict.fromkeys(groups, 0), dict.fromkeys(groups, 0)
    for layer in layers:
        group = family.group_of(layer)
        params[group] += layer_params(model, layer)
        if layer.kind == "transformer":
            flops["transformer"] += layer_flops(count, prefix, layer, attention=False)
            flops["attention"] += layer_flops(count, prefix, layer, attention=True)
        else:
            flops[group] += per_layer_flops[layer.name]
    return [ModuleSummaryRow(model_name, g, params[g], flops[g], seconds, batch) for g in groups]
