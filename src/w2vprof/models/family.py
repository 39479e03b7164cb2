"""The model-family interface: what the training step, the measurement passes and `summary` need from a model.

A family builds its model for an objective (`build`), makes a batch's targets before anything is timed
(`make_targets`), computes the loss of one batch (`loss`), lists its layers (`layers`, each a set of module paths)
and puts them into Table 1 groups (`summary_groups`, `group_of`). The built-in families (w2vprof.models.families)
and a user's own model (`--model package.module:factory`, w2vprof.models.registry) answer through it alike.

    family = get_family("hubert-base")
    model = family.build("pretrain", ModelOptions(clusters=500)).to(device).train()
    targets = family.make_targets(batch, model)            # before timing; on the batch's device
    output = family.loss(model, batch, targets)             # the forward pass, inside the timed step
    output.loss.backward(); optimizer.step(); family.after_update(model)

Nothing here imports torch: a family is chosen, checked and listed without it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from w2vprof.errors import SettingError
from w2vprof.models.layers import KIND_GROUPS, SPEECH_GROUPS, LayerSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import Tensor, nn

    from w2vprof.workload import Batch

__all__ = [
    "CTC",
    "OBJECTIVES",
    "PRETRAIN",
    "LossOutput",
    "ModelFamily",
    "ModelOptions",
    "OptimizerSettings",
    "count_parameters",
    "make_options",
]

PRETRAIN = "pretrain"
CTC = "ctc"
OBJECTIVES = (PRETRAIN, CTC)
#: CTC's default vocabulary: characters, the blank included.
DEFAULT_VOCAB = 32


@dataclass(frozen=True)
class ModelOptions:
    """Settings a model is built with, beyond its name and objective."""

    clusters: Optional[int] = None  # cluster-prediction heads (HuBERT, WavLM): k-means classes; None: the default
    vocab: int = DEFAULT_VOCAB  # CTC: output classes, the blank included


def make_options(clusters: Any = None, vocab: Any = DEFAULT_VOCAB) -> ModelOptions:
    """Checked options: SettingError naming `clusters` or `vocab` for a value no model can take."""
    return ModelOptions(
        clusters=None if clusters is None else _whole(clusters, "clusters", 1, "a positive whole number"),
        vocab=_whole(vocab, "vocab", 2, "a whole number of at least 2 (the blank and one character)"),
    )


def _whole(value: Any, setting: str, least: int, wanted: str) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < least:
        raise SettingError(setting, f"must be {wanted}, got {value!r}")
    return int(text)


@dataclass(frozen=True)
class OptimizerSettings:
    """AdamW's settings for a model (fairseq's pretraining values unless the family says otherwise)."""

    lr: float = 5e-4
    betas: Tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.01


@dataclass
class LossOutput:
    """One batch's loss, as a family computes it."""

    loss: Tensor  # the scalar backward() starts from
    parts: Dict[str, Tensor] = field(default_factory=dict)  # its named terms, detached (for logs and reports)
    count: int = 1  # what the loss is a mean over: masked frames (pretraining), utterances (CTC): a weight
    output: Any = None  # the model's own output, for callers that want more of it


class ModelFamily(abc.ABC):
    """A model that w2vprof can build, train one step of and take apart layer by layer.

    Subclasses set `name` and `source` and define `build`, `loss` and `layers`; the rest has defaults that suit a
    model whose forward computes its own loss from the batch alone (no targets, no schedule).
    """

    name: str = ""  # as results name it (`--model`)
    source: str = ""  # where its configuration comes from: a paper, a config file, a builder
    objectives: Tuple[str, ...] = (PRETRAIN,)  # what `build` accepts

    @abc.abstractmethod
    def build(self, objective: str = PRETRAIN, options: Optional[ModelOptions] = None) -> nn.Module:
        """A randomly initialised model for `objective` (on torch's default device: the meta device under
        w2vprof.models.meta.on_meta, for shapes only). The caller seeds torch first."""

    def check_support(self) -> None:
        """Raise IncompatibleInstall (one line, exit 2) where the installed torch/torchaudio cannot build this
        model; called before any file is written or process started. A user's model needs a working pair only."""
        from w2vprof.compat import check_model_support

        check_model_support((), self.name)

    def make_targets(self, batch: Batch, model: nn.Module, generator: Optional[torch.Generator] = None) -> Any:
        """What `loss` needs besides the batch (cluster ids, transcripts), on the batch's device, drawn from
        `generator` (torch's default CPU generator if None). Called before the step is timed. None by default."""
        return None

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: Batch, targets: Any) -> LossOutput:
        """The forward pass on one batch and its loss (the part of the step that autocast covers)."""

    @abc.abstractmethod
    def layers(self, model: nn.Module) -> list[LayerSpec]:
        """The model's layers in forward order; every parameter in exactly one. An `objective` row (no modules)
        takes the work done outside every listed module (w2vprof.models.layers.OBJECTIVE)."""

    def summary_groups(self, model: nn.Module) -> Tuple[str, ...]:
        """Table 1's groups for this model, in order (`attention`: the transformer layers' QK^T and AV)."""
        return SPEECH_GROUPS

    def group_of(self, layer: LayerSpec) -> str:
        """The Table 1 group of one layer (by its kind; an unknown kind counts as a head)."""
        return KIND_GROUPS.get(layer.kind, "heads")

    def inference(self, model: nn.Module, batch: Batch) -> Tensor:
        """Table 1's workload: one forward pass of every module over the batch, reduced to a scalar. By default
        the loss's forward pass (targets from make_targets with torch's default generator)."""
        return self.loss(model, batch, self.make_targets(batch, model)).loss

    def after_update(self, model: nn.Module) -> None:
        """Called once after each optimizer update (wav2vec 2.0: the Gumbel temperature schedule)."""
        return None

    def optimizer_settings(self, model: nn.Module) -> OptimizerSettings:
        return OptimizerSettings()

    def receptive_field_samples(self) -> int:
        """The shortest input (in samples) the model accepts; 1 unless the family knows better."""
        return 1

    def check_objective(self, objective: str) -> None:
        """SettingError when this family cannot build `objective`."""
        if objective not in OBJECTIVES:
            raise SettingError.unknown("objective", objective, OBJECTIVES)
        if objective not in self.objectives:
            offered = ", ".join(self.objectives)
            raise SettingError("objective", f"{objective!r} is not offered by model {self.name}: it offers {offered}")


def count_parameters(family: ModelFamily, objective: str = PRETRAIN, options: Optional[ModelOptions] = None) -> int:
    """The model's parameter count, built on torch's meta device: no weights allocated, whatever its size."""
    from w2vprof.models.meta import on_meta

    with on_meta():
        model = family.build(objective, options)
    return sum(p.numel() for p in model.parameters())
