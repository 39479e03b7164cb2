"""w2vprof: what it costs to train wav2vec 2.0 on the device in front of you.

Kept import-light on purpose: `w2vprof --help` and `--version` must not import torch.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
