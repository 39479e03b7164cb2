"""Training recipes: the standard ways over the memory wall (activation checkpointing, freezing, micro-batches, the
optimizer, compilation), as one checked value that the measurement engine applies to a model and its step.

A `Recipe` is made from options (`make_recipe`, SettingError naming the option for a bad value) or from its short text
(`parse_recipe`). Its canonical text (`Recipe.text`) is the `recipe` column of a results row and the recipe's part of
a sweep's resume key: `default` when nothing differs from the plain training step, else the options that differ,
in a fixed order, e.g. `ckpt=transformer,freeze=cnn,accum=2,optim=sgd,compile`.

What each option changes in the step, how it is measured and the arithmetic of what it should save: docs/recipes.md.
- checkpointing: every module of the chosen layers runs under non-reentrant `torch.utils.checkpoint`; the layer
  keeps only its inputs (which the saved-tensor tracker sees: checkpoint saves them for backward) and runs its
  forward again during backward. That second forward is real work: the backward FLOP counter charges it to the
  layer's `recompute_flops` (`recomputing_layer` tells the counter when it runs), not to its backward FLOPs.
- freeze: parameters without gradients and without optimizer state. `cnn` freezes the CNN encoder; `cnn+N`
  (N >= 1) also freezes every layer before the first transformer layer in the model family's map (wav2vec 2.0:
  feature projection, mask embedding, positional convolution, and the LayerNorm before the layers of post-LN
  models) and the first N transformer layers, so no gradient flows into a frozen layer and it saves no
  activations at all.
- accumulate: the batch runs as K equal micro-batches (forward and backward each, loss divided by K) and one
  optimizer step (measure.step.TrainingStep).
- optimizer: torch's AdamW (fairseq's values), SGD with momentum 0.9, or Adafactor; only trainable parameters.
- compile: torch.compile of every layer's modules after the measurement pass (`compile_model`); the engine times
  compilation apart.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Optional

from w2vprof.errors import BadInput, SettingError
from w2vprof.records import DEFAULT_RECIPE

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from w2vprof.models.family import ModelFamily, ModelOptions, OptimizerSettings
    from w2vprof.models.layers import LayerSpec

__all__ = [
    "CHECKPOINTING",
    "DEFAULT_RECIPE",
    "OPTIMIZERS",
    "OPTIMIZER_FLOPS_PER_PARAM",
    "AppliedRecipe",
    "Recipe",
    "RecipeUnsupported",
    "apply_recipe",
    "compile_model",
    "compile_problem",
    "make_optimizer",
    "make_recipe",
    "optimizer_flops_per_param",
    "parse_recipe",
    "recomputing_layer",
]

#: --checkpointing: the layer kinds (w2vprof.models.family.LayerSpec) whose modules run under activation checkpointing.
CHECKPOINTING: dict[str, tuple[str, ...]] = {
    "none": (),
    "transformer": ("transformer",),
    "cnn": ("cnn",),
    "all": ("cnn", "projection", "positional", "transformer"),
}
OPTIMIZERS = ("adamw", "sgd", "adafactor")
#: Elementwise FLOPs per trainable parameter element of one optimizer step (FLOP counters count none of them):
#: AdamW: decay 1, first moment (lerp) 3, second moment 4, denominator (sqrt, divide, add eps) 3, update 3 = 14.
#: SGD with momentum (no weight decay): momentum buffer mu * b + g 2, update p - lr * b 2 = 4.
#: Adafactor (torch's, a matrix parameter): decay 1, row and column mean squares 4, rank-1 variance estimate
#: (outer product, normalise) 2, clamp and rsqrt 2, times the gradient 1, the update's RMS 2, update 2 = 14.
OPTIMIZER_FLOPS_PER_PARAM = {"adamw": 14, "sgd": 4, "adafactor": 14}
SGD_MOMENTUM = 0.9
#: Names of the options in the canonical text, in its order.
_SHORT = (("checkpointing", "ckpt"), ("freeze", "freeze"), ("accumulate", "accum"), ("optimizer", "optim"))


class RecipeUnsupported(Exception):
    """This platform cannot run the recipe (torch.compile unavailable, no Adafactor in this torch): the record's
    status is `unsupported` with this message as its reason."""


@dataclass(frozen=True)
class Recipe:
    checkpointing: str = "none"  # none | transformer | cnn | all
    freeze: str = "none"  # none | cnn | cnn+N
    accumulate: int = 1  # micro-batches per optimizer step
    optimizer: str = "adamw"  # adamw | sgd | adafactor
    compile: bool = False

    @property
    def text(self) -> str:
        """The canonical short form: `default`, or the options that differ from it, e.g. `ckpt=all,accum=4`."""
        parts = [
            f"{short}={getattr(self, name)}" for name, short in _SHORT if getattr(self, name) != getattr(DEFAULT, name)
        ]
        parts += ["compile"] if self.compile else []
        return ",".join(parts) or DEFAULT_RECIPE

    @property
    def frozen_transformer_layers(self) -> int:
        """N of `cnn+N` (0 for `cnn` and `none`)."""
        return int(self.freeze.split("+")[1]) if "+" in self.freeze else 0

    def record_fields(self) -> dict[str, Any]:
        """The result row's recipe columns."""
        return {
            "recipe": self.text,
            "checkpointing": self.checkpointing,
            "freeze": self.freeze,
            "accumulate": self.accumulate,
            "optimizer": self.optimizer,
            "compile": self.compile,
        }

    def check(self, model: str, batch: int) -> None:
        """BadInput where the recipe cannot apply to this model and batch."""
        from w2vprof.models.config import BUILTIN_NAMES, builtin_config

        if batch % self.accumulate:
            raise SettingError(
                "accumulate",
                f"{self.accumulate} does not divide {{batch}} {batch}: each of the "
                f"{self.accumulate} micro-batches must hold the same number of utterances",
                ("batch",),
            )
        if model not in BUILTIN_NAMES:
            return  # a model of the user's own: its layer map is checked when the recipe is applied
        layers = builtin_config(model).num_layers
        if self.frozen_transformer_layers > layers:
            raise SettingError(
                "freeze", f"{self.freeze}: {model} has {layers} transformer layers (cnn+1 .. cnn+{layers})"
            )

    def check_trains(self, family: ModelFamily, objective: str, options: ModelOptions) -> None:
        """SettingError naming `freeze` where the recipe leaves no parameter to train (nothing to measure), read
        from the family's layer map on a model built on the meta device (shapes only, no weights). A model that
        cannot be built there is checked when the recipe is applied (`apply_recipe`)."""
        from w2vprof.models.meta import on_meta

        if self.freeze == "none":
            return
        try:
            with on_meta():
                model = family.build(objective, options)
                layers = family.layers(model)
        except BadInput:
            raise
        except Exception:  # noqa: BLE001 - a user's model the meta device cannot build: checked when applied
            return
        _freeze_parameters(model, self, layers)
        _check_trainable(model, self, f"{family.name} ({objective})")


DEFAULT = Recipe()


def make_recipe(
    checkpointing: str = "none",
    freeze: str = "none",
    accumulate: Any = 1,
    optimizer: str = "adamw",
    compile: bool = False,
) -> Recipe:
    """A recipe from option values, each checked (BadInput naming the option and the allowed values)."""
    if checkpointing not in CHECKPOINTING:
        raise SettingError.unknown("checkpointing", checkpointing, CHECKPOINTING)
    if optimizer not in OPTIMIZERS:
        raise SettingError.unknown("optimizer", optimizer, OPTIMIZERS)
    text = str(accumulate).strip()
    if not text.isdigit() or int(text) < 1:
        raise SettingError("accumulate", f"must be a whole number >= 1, got {accumulate!r}")
    return Recipe(checkpointing, _freeze(freeze), int(text), optimizer, bool(compile))


def _freeze(text: str) -> str:
    """none | cnn | cnn+N (N a whole number; cnn+0 is cnn)."""
    text = str(text).strip()
    if text in ("none", "cnn"):
        return text
    base, plus, count = text.partition("+")
    if base != "cnn" or not plus or not count.isdigit():
        raise SettingError.unknown("freeze", text, ("none", "cnn", "cnn+N (N transformer layers too)"))
    return "cnn" if int(count) == 0 else f"cnn+{int(count)}"


def parse_recipe(text: str) -> Recipe:
    """A recipe from its short form (any order; `default` or empty is the default), e.g. `ckpt=all,accum=2`."""
    text = (text or "").strip()
    if text in ("", DEFAULT_RECIPE):
        return DEFAULT
    options: dict[str, Any] = {}
    names = {short: name for name, short in _SHORT}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, _, value = part.partition("=")
        if key == "compile" and value in ("", "true"):
            options["compile"] = True
        elif key in names and value:
            options[names[key]] = value
        else:
            raise BadInput(f"recipe {text!r}: cannot read {part!r} (options: ckpt=, freeze=, accum=, optim=, compile)")
    return make_recipe(**options)


# -- applying a recipe to a model -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AppliedRecipe:
    """What a recipe did to one model, per layer (for the layer rows)."""

    recipe: Recipe
    checkpointed: frozenset[str]  # layer names whose modules run under checkpointing
    frozen: frozenset[str]  # layer names none of whose parameters gets a gradient


def apply_recipe(model: nn.Module, recipe: Recipe, layers: list[LayerSpec]) -> AppliedRecipe:
    """Freeze the recipe's parameters and wrap its checkpointed modules (in place); the default changes nothing."""
    _freeze_parameters(model, recipe, layers)
    if recipe.freeze != "none":
        _check_trainable(model, recipe, "the model")
    wrapped = CHECKPOINTING[recipe.checkpointing]
    checkpointed = set()
    for layer in layers:
        if layer.kind in wrapped and layer.modules:
            for path in layer.modules:
                module = model.get_submodule(path)
                module.forward = _checkpointed(module.forward, layer.name)  # instance attribute: __call__ uses it
            checkpointed.add(layer.name)
    frozen = {
        layer.name
        for layer in layers
        if _layer_parameters(model, layer) and not any(p.requires_grad for p in _layer_parameters(model, layer))
    }
    return AppliedRecipe(recipe, frozenset(checkpointed), frozenset(frozen))


def _check_trainable(model: nn.Module, recipe: Recipe, what: str) -> None:
    if not any(parameter.requires_grad for parameter in model.parameters()):
        raise SettingError("freeze", f"{recipe.freeze} leaves no trainable parameter in {what}: nothing to train")


def _layer_parameters(model: nn.Module, layer: LayerSpec) -> list[torch.nn.Parameter]:
    params = [p for path in layer.modules for p in model.get_submodule(path).parameters()]
    return params + [model.get_parameter(name) for name in layer.parameters]


def _freeze_parameters(model: nn.Module, recipe: Recipe, layers: list[LayerSpec]) -> None:
    """`cnn`: the layers of kind cnn. `cnn+N`: also every layer before the first transformer layer (in forward
    order; with wav2vec 2.0 the feature projection, the mask embedding and the positional convolution) and the
    first N transformer layers, but not the transformer's final LayerNorm of a pre-LN model, which runs after the
    last layer. SettingError where the map has fewer than N transformer layers."""
    if recipe.freeze == "none":
        return
    count = recipe.frozen_transformer_layers
    kinds = [layer.kind for layer in layers]
    if count > kinds.count("transformer"):
        raise SettingError("freeze", f"{recipe.freeze}: the model has {kinds.count('transformer')} transformer layers")
    first_transformer = kinds.index("transformer") if "transformer" in kinds else len(layers)
    transformer_index = 0
    for index, layer in enumerate(layers):
        if layer.kind == "transformer":
            frozen = transformer_index < count
            transformer_index += 1
        else:
            # Below the first frozen transformer layer everything is frozen too: a trainable module there would
            # send gradients through the frozen layers, which would then keep their activations for it.
            frozen = layer.kind == "cnn" or (count > 0 and index < first_transformer)
        if not frozen:
            continue
        for path in layer.modules:
            if path == _FINAL_LAYER_NORM and not getattr(model.get_submodule("transformer"), "layer_norm_first", True):
                continue  # torchaudio's layer_norm_first is False for pre-LN models: it runs after the last layer
            model.get_submodule(path).requires_grad_(False)
        for name in layer.parameters:
            model.get_parameter(name).requires_grad_(False)


#: The encoder's own LayerNorm (torchaudio's Transformer.layer_norm), listed with the positional convolution.
_FINAL_LAYER_NORM = "transformer.layer_norm"


# -- activation checkpointing ------------------------------------------------------------------------------------
_recomputing: list[str] = []  # the layers whose checkpointed forward is running again, innermost last


def recomputing_layer() -> Optional[str]:
    """The layer whose forward checkpointing is running again right now (during backward), else None."""
    return _recomputing[-1] if _recomputing else None


@contextlib.contextmanager
def _recomputation(layer: str) -> Iterator[None]:
    _recomputing.append(layer)
    try:
        yield
    finally:
        _recomputing.pop()


def _checkpointed(forward: Any, layer: str) -> Any:
    """`forward` under non-reentrant checkpointing; its recomputation announced as `layer`'s."""
    import inspect

    import torch
    from torch.utils.checkpoint import checkpoint

    def contexts() -> tuple[Any, Any]:  # (around the first forward, around the recomputation), fresh each call
        return contextlib.nullcontext(), _recomputation(layer)

    def announced(*args: Any, **kwargs: Any) -> Any:  # torch 2.0 (no context_fn): a forward run by backward
        if torch._C._current_graph_task_id() == -1:  # is the recomputation
            return forward(*args, **kwargs)
        with _recomputation(layer):
            return forward(*args, **kwargs)

    takes_contexts = "context_fn" in inspect.signature(checkpoint).parameters  # torch 2.1+

    @functools.wraps(forward)
    def run(*args: Any, **kwargs: Any) -> Any:
        if takes_contexts:
            return checkpoint(forward, *args, use_reentrant=False, context_fn=contexts, **kwargs)
        return checkpoint(announced, *args, use_reentrant=False, **kwargs)

    return run


# -- the optimizer and compilation -------------------------------------------------------------------------------
def make_optimizer(model: nn.Module, recipe: Recipe, settings: OptimizerSettings) -> torch.optim.Optimizer:
    """The recipe's optimizer over the trainable parameters only (frozen ones get no state), with the model
    family's hyper-parameters (`settings`; wav2vec 2.0: fairseq's pretraining values).

    AdamW and Adafactor take the learning rate and decoupled weight decay; SGD has momentum 0.9 and no weight
    decay. RecipeUnsupported where this torch has no such optimizer (Adafactor needs torch 2.5).
    """
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=settings.lr, momentum=SGD_MOMENTUM)
    if recipe.optimizer == "adafactor":
        if not hasattr(torch.optim, "Adafactor"):
            raise RecipeUnsupported(f"torch {torch.__version__} has no torch.optim.Adafactor (torch 2.5 or newer)")
        return torch.optim.Adafactor(params, lr=settings.lr, weight_decay=settings.weight_decay)
    return torch.optim.AdamW(
        params, lr=settings.lr, betas=settings.betas, eps=settings.eps, weight_decay=settings.weight_decay
    )


def optimizer_flops_per_param(optimizer: torch.optim.Optimizer) -> int:
    """OPTIMIZER_FLOPS_PER_PARAM of an optimizer by its class (AdamW's 14 for any other)."""
    names = {"AdamW": "adamw", "SGD": "sgd", "Adafactor": "adafactor"}
    return OPTIMIZER_FLOPS_PER_PARAM[names.get(type(optimizer).__name__, "adamw")]


#: torch.compile's backend (tests use dynamo's "eager": tracing without code generation).
COMPILE_BACKEND = "inductor"
#: The layer kinds whose modules are compiled: the objective's host-side work (masking and negative sampling in
#: numpy) stays eager, so those modules run as compiled graphs with dynamic shapes.
COMPILED_KINDS = ("cnn", "projection", "positional", "transformer", "quantizer", "head")


def compile_model(model: nn.Module, layers: list[LayerSpec]) -> None:
    """torch.compile each layer's modules' forward in place (dynamic shapes): compilation itself happens at their
    next call.

    The whole forward is not one graph: it draws masks on the host (numpy) from host lengths, which dynamo cannot
    trace with dynamic shapes. Per module, with dynamic shapes, a new masked-frame count needs no recompilation.
    Each module's `forward` is compiled (`torch.compile` of a function, torch 2.0+; `nn.Module.compile` is 2.2+)
    behind an eager wrapper that hands Python floats to the compiled code as 0-dim tensors (`_scalars_as_tensors`).
    RecipeUnsupported, with torch's own reason, where torch has no compiler for this Python or platform.
    """
    import torch

    problem = compile_problem()
    if problem:
        raise RecipeUnsupported(problem)
    for layer in layers:
        if layer.kind in COMPILED_KINDS:
            for path in layer.modules:
                module = model.get_submodule(path)
                compiled = torch.compile(module.forward, backend=COMPILE_BACKEND, dynamic=True)
                # instance attribute: __call__ uses it
                module.forward = _scalars_as_tensors(compiled) if _specializes_floats() else compiled


def compile_problem() -> Optional[str]:
    """Why torch.compile cannot run here (torch's own check: its dynamo supports only some Pythons and platforms;
    torch 2.0 stops at Python 3.10, 2.1 at 3.11), or None."""
    import torch

    try:
        from torch._dynamo.eval_frame import check_if_dynamo_supported

        check_if_dynamo_supported()
    except Exception as exc:  # noqa: BLE001 - any failure to load or pass torch's check means no compiler here
        from w2vprof.compat import one_line

        return f"torch {torch.__version__} cannot compile here: {one_line(exc)}"
    return None


def _specializes_floats() -> bool:
    """Whether dynamo guards on the value of a Python float argument (torch's `specialize_float`: True up to
    torch 2.4, where it first appears, and before it always; False from 2.5 on)."""
    import torch._dynamo

    return bool(getattr(torch._dynamo.config, "specialize_float", True))


def _scalars_as_tensors(compiled: Any) -> Any:
    """`compiled` called with each Python float argument as a float32 0-dim tensor on the first tensor argument's
    device.

    Why: where dynamo specializes floats (`_specializes_floats`), the quantizer's Gumbel temperature, which changes
    after every update, would compile the quantizer again in each timed step. A tensor's value is no part of a guard.
    The arithmetic is unchanged: a float32 tensor divided by a Python float computes in float32, as it does by a
    float32 0-dim tensor (float32, not float64: MPS has no float64).
    """
    import torch

    def as_tensor(value: Any, device: Optional[torch.device]) -> Any:
        return torch.tensor(value, dtype=torch.float32, device=device) if isinstance(value, float) else value

    @functools.wraps(compiled)
    def run(*args: Any, **kwargs: Any) -> Any:
        tensors = [value for value in (*args, *kwargs.values()) if isinstance(value, torch.Tensor)]
        device = tensors[0].device if tensors else None
        args = tuple(as_tensor(value, device) for value in args)
        return compiled(*args, **{name: as_tensor(value, device) for name, value in kwargs.items()})

    return run
