"""What the installed torch and torchaudio can do here: build wav2vec 2.0, and train in each precision.

`check_model_support()` runs before any model is built (w2vprof.models.build_model calls it; so do the commands
that start other processes to build one). A torch/torchaudio pair that cannot build the model then ends the
command with one line naming both versions (exit 2) instead of a traceback from deep inside torchaudio.

Which pairs work (docs.pytorch.org/audio/2.11.0/installation.html, "Compatibility Matrix"): up to 2.10 each
torchaudio release holds C++ extensions linked against one torch release (torchaudio 2.X <-> torch 2.X, 0.X <->
torch 1.X; a mismatch shows as an `undefined symbol` when torchaudio is imported, or later). From 2.11 on,
torchaudio is built against torch's stable ABI and works with that torch release and every later one (its wheel
declares `torch>=2.11`). w2vprof itself needs torch 2.0 or later (TORCH_FLOOR).

`training_problem()` is the one probe for "can this device train in this precision": forward (under autocast
for mixed precision), backward, gradient-scaler step and update, on one small layer. It imports nothing from the
rest of w2vprof, so the measurement engine can adopt it as its mixed-precision check.

Written for Python 3.8 (NVIDIA's torch for JetPack 5 runs there): no `match`, no `functools.cache`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import re
from importlib import metadata
from typing import Any, Dict, Tuple

from w2vprof.errors import BadInput

__all__ = [
    "STABLE_ABI_TORCHAUDIO",
    "TORCH_FLOOR",
    "IncompatibleInstall",
    "check_model_support",
    "grad_scaler",
    "installed_version",
    "major_minor",
    "model_support_problem",
    "numpy_pair_problem",
    "one_line",
    "torch_floor_problem",
    "training_problem",
    "version_pair_problem",
]

#: The first torchaudio built against torch's stable ABI (works with its own and every later torch release).
STABLE_ABI_TORCHAUDIO = (2, 11)
#: The oldest torch w2vprof measures with (pyproject.toml declares the same; .ci/test-dependency-floor.sh tests it).
#: NVIDIA's torch for JetPack 5 (Jetson Xavier, Python 3.8) is 2.0 or 2.1. Before 2.4 torch's FlopCounterMode cannot
#: attribute FLOPs to every module, so there w2vprof counts with its own (w2vprof.measure.flop_fallback), built on
#: what torch 2.0 added: dispatch modes, global module hooks, register_multi_grad_hook, torch.device as a context.
TORCH_FLOOR = (2, 0)

#: The first torch built against NumPy 2: older ones cannot exchange arrays with NumPy 2 ("Numpy is not available").
NUMPY_2_TORCH = (2, 3)

#: The encoder's keyword arguments every torchaudio builder w2vprof calls takes (models/encoder.py), and the
#: components w2vprof.models.pretraining takes from torchaudio.
BUILDER_ARGUMENTS = (
    "extractor_mode",
    "extractor_conv_layer_config",
    "extractor_conv_bias",
    "encoder_embed_dim",
    "encoder_projection_dropout",
    "encoder_pos_conv_kernel",
    "encoder_pos_conv_groups",
    "encoder_num_layers",
    "encoder_num_heads",
    "encoder_attention_dropout",
    "encoder_ff_interm_features",
    "encoder_ff_interm_dropout",
    "encoder_dropout",
    "encoder_layer_norm_first",
    "encoder_layer_drop",
)
COMPONENTS = ("FeatureExtractor", "FeatureProjection", "Transformer")

#: Each torchaudio builder a built-in model family calls (models/encoder.py, models/masked_prediction.py): what it
#: must accept beyond BUILDER_ARGUMENTS, and the components the family takes beside it.
BUILDER_NEEDS: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "wav2vec2_model": (("aux_num_out",), ()),
    "wavlm_model": (
        ("aux_num_out", "encoder_num_buckets", "encoder_max_distance"),
        ("MaskGenerator", "LogitGenerator"),
    ),
    "hubert_pretrain_model": (  # it builds its own head: no aux_num_out
        ("mask_prob", "mask_length", "num_classes", "final_dim", "feature_grad_mult", "skip_masked", "skip_nomask"),
        (),
    ),
}
WAV2VEC2_BUILDERS = ("wav2vec2_model",)

HOW_TO_FIX = (
    f"install torch {TORCH_FLOOR[0]}.{TORCH_FLOOR[1]} or later and the torchaudio built for it "
    "(docs/install.md; README: Installing)"
)


class IncompatibleInstall(BadInput):
    """The installed torch/torchaudio cannot do what was asked (exit 2: the user's install, not a w2vprof bug)."""


def one_line(exc: BaseException) -> str:
    """`Type: first non-empty line of the message` - how every probe failure is reported."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def installed_version(distribution: str) -> str | None:
    """The version pip installed (read from its metadata, without importing the package), or None."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def major_minor(version: str) -> tuple[int, int] | None:
    """'2.1.0a0+41361538.nv23.06' -> (2, 1); None for a string that does not start with two numbers."""
    found = re.match(r"\s*(\d+)\.(\d+)", version or "")
    return (int(found.group(1)), int(found.group(2))) if found else None


def torch_floor_problem(torch_version: str) -> str | None:
    """Why w2vprof cannot measure with this torch release (older than TORCH_FLOOR), or None."""
    found = major_minor(torch_version)
    if found is not None and found < TORCH_FLOOR:
        floor = f"{TORCH_FLOOR[0]}.{TORCH_FLOOR[1]}"
        return f"w2vprof needs torch {floor} or later (it counts FLOPs with torch {floor}'s dispatch modes and hooks)"
    return None


def numpy_pair_problem(torch_version: str, numpy_version: str) -> str | None:
    """Why this torch cannot exchange arrays with this NumPy (torch 2.0-2.2 with NumPy 2; the masks and the audio
    are drawn and read as arrays), or None."""
    torch_mm, numpy_mm = major_minor(torch_version), major_minor(numpy_version)
    if torch_mm is None or numpy_mm is None or torch_mm >= NUMPY_2_TORCH or numpy_mm < (2, 0):
        return None
    return (
        f"torch {torch_mm[0]}.{torch_mm[1]} was built against NumPy 1 and cannot exchange arrays with numpy "
        f"{numpy_version}; install numpy<2 (pip install 'numpy<2')"
    )


def version_pair_problem(torch_version: str, torchaudio_version: str) -> str | None:
    """Why this torchaudio release cannot work with this torch release, or None (also when a version is unreadable:
    then importing and building decide)."""
    torch_mm, audio_mm = major_minor(torch_version), major_minor(torchaudio_version)
    if torch_mm is None or audio_mm is None:
        return None
    if audio_mm >= STABLE_ABI_TORCHAUDIO:
        if torch_mm < audio_mm:
            return f"torchaudio {audio_mm[0]}.{audio_mm[1]} needs torch {audio_mm[0]}.{audio_mm[1]} or later"
        return None
    wanted = (1, audio_mm[1]) if audio_mm[0] == 0 else audio_mm  # torchaudio 0.13 was torch 1.13's
    if torch_mm != wanted:
        return f"torchaudio {audio_mm[0]}.{audio_mm[1]} is built for torch {wanted[0]}.{wanted[1]} only"
    return None


def _builder_problem(torchaudio: Any, builders: Tuple[str, ...]) -> str | None:
    """What w2vprof needs from torchaudio.models for a model built by `builders` and this torchaudio lacks, or None."""
    components_needed = list(COMPONENTS) if builders else []
    for name in builders:
        extra_arguments, extra_components = BUILDER_NEEDS[name]
        builder = getattr(getattr(torchaudio, "models", None), name, None)
        if builder is None:
            return f"torchaudio.models has no {name}"
        wanted = BUILDER_ARGUMENTS + extra_arguments
        try:
            accepted = set(inspect.signature(builder).parameters)
        except (TypeError, ValueError):  # a builder without a readable signature: building will tell
            accepted = set(wanted)
        missing = [argument for argument in wanted if argument not in accepted]
        if missing:
            return f"torchaudio.models.{name} takes no {', '.join(missing)}"
        components_needed += [component for component in extra_components if component not in components_needed]
    if not components_needed:
        return None
    components = importlib.import_module("torchaudio.models.wav2vec2.components")
    absent = [name for name in components_needed if not hasattr(components, name)]
    return f"torchaudio.models.wav2vec2.components lacks {', '.join(absent)}" if absent else None


@functools.lru_cache(maxsize=None)  # not functools.cache: Python 3.9+
def model_support_problem(builders: Tuple[str, ...] = WAV2VEC2_BUILDERS, model: str = "wav2vec 2.0") -> str | None:
    """Why the installed torch/torchaudio cannot build `model` here (one line naming both versions), or None.

    `builders`: the torchaudio builders the model's family calls (keys of BUILDER_NEEDS; a family's
    `torchaudio_builders`); none for a user's own model, which needs only a working torch and torchaudio.
    Cached: the answer cannot change within a process (call `model_support_problem.cache_clear()` in tests).
    """
    audio_version = installed_version("torchaudio") or "(not installed)"
    numpy = numpy_pair_problem(installed_version("torch") or "", installed_version("numpy") or "")
    if numpy:  # before importing torch, which then prints NumPy's own multi-line warning
        pair = f"torch {installed_version('torch')} with torchaudio {audio_version}"
        return f"{pair} cannot train {model} here: {numpy}"
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - any failure to import is the answer
        pair = f"torch {installed_version('torch') or '(not installed)'} with torchaudio {audio_version}"
        return f"{pair}: torch cannot be imported: {one_line(exc)}; {HOW_TO_FIX}"
    try:
        import torchaudio
    except Exception as exc:  # noqa: BLE001 - an ABI mismatch raises OSError/ImportError ("undefined symbol")
        reason: str | None = f"importing torchaudio failed: {one_line(exc)}"
    else:
        audio_version = getattr(torchaudio, "__version__", audio_version)
        reason = torch_floor_problem(torch.__version__) or version_pair_problem(torch.__version__, audio_version)
        try:
            reason = reason or _builder_problem(torchaudio, builders)
        except Exception as exc:  # noqa: BLE001 - a torchaudio.models that fails to import or inspect
            reason = f"torchaudio.models: {one_line(exc)}"
    if reason is None:
        return None
    pair = f"torch {torch.__version__} with torchaudio {audio_version}"
    return f"{pair} cannot build {model} here: {reason}; {HOW_TO_FIX}"


def check_model_support(builders: Tuple[str, ...] = WAV2VEC2_BUILDERS, model: str = "wav2vec 2.0") -> None:
    """Raise IncompatibleInstall (exit 2, one line) when the installed torch/torchaudio cannot build `model` with
    `builders` (see model_support_problem)."""
    problem = model_support_problem(tuple(builders), model)
    if problem:
        raise IncompatibleInstall(problem)


def grad_scaler(device: str, init_scale: float = 2.0**16) -> Any:
    """A gradient scaler for float16 training on `device` (cuda or mps), on every torch that has one, starting at
    loss scale `init_scale` (torch's default 65536; the measurement engine starts at fairseq's 128).

    torch.amp.GradScaler(device) exists from torch 2.3; before that only CUDA has one (torch.cuda.amp.GradScaler).
    Raises IncompatibleInstall where this torch has none for the device.
    """
    import torch

    amp_scaler = getattr(getattr(torch, "amp", None), "GradScaler", None)
    if amp_scaler is not None:
        return amp_scaler(device, init_scale=init_scale)
    if device == "cuda":
        return torch.cuda.amp.GradScaler(init_scale=init_scale)
    raise IncompatibleInstall(
        f"torch {torch.__version__} has no gradient scaler for {device} (torch.amp.GradScaler needs torch 2.3 or later)"
    )


def training_problem(device: str, autocast_dtype: Any = None, scaled: bool = False) -> str | None:
    """Why one small training step fails on `device`, or None when it works.

    The step: a Linear layer's forward (under torch.autocast with `autocast_dtype` when one is given), backward,
    an AdamW step through a gradient scaler when `scaled` (float16 on cuda/mps), the scaler's update, and a check
    that the weights stayed finite. Any exception becomes its one-line reason.
    """
    try:
        import torch

        layer = torch.nn.Linear(16, 16).to(device)
        optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-3)
        scaler = grad_scaler(device) if scaled else None
        autocast = (
            torch.autocast(device_type=device, dtype=autocast_dtype)
            if autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            loss = layer(torch.randn(8, 16, device=device)).float().pow(2).mean()
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if not bool(torch.isfinite(layer.weight).all()):
            return "the weights are not finite after one step"
    except Exception as exc:  # noqa: BLE001 - the probe's answer is the failure itself
        return one_line(exc)
    return None
