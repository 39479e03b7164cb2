"""The one failure classifier: an exception, or the stderr text of a process that failed -> (status, one line).

Used by the measurement engine (an exception raised while measuring), the sweep's parent process (the stderr of a
child that exited with an error) and the federated strategy (the error a client's reply carries, in Flower's
`<class 'X'>:<'message'>` form). The status is
`oom` when the failure is the device or the host running out of memory, else `error`: a sweep prunes every larger
configuration after an `oom`, so a memory failure recorded as `error` costs a sweep its pruning, and anything else
recorded as `oom` would prune configurations that might have run.

Out-of-memory signatures (each from a real message; tests/test_failures.py holds recorded lines):
- "out of memory": the CUDA caching allocator ("CUDA out of memory. Tried to allocate ..."), the CUDA runtime and
  driver ("CUDA error: out of memory", "CUDA driver error: out of memory"), MPS ("MPS backend out of memory"), HIP.
- torch.OutOfMemoryError / torch.cuda.OutOfMemoryError and Python's MemoryError, by class name.
- cuBLAS "CUBLAS_STATUS_ALLOC_FAILED": cuBLAS could not allocate its handle or workspace (on Jetson often the first
  sign that unified memory is exhausted).
- cuDNN "CUDNN_STATUS_ALLOC_FAILED" (cuDNN 8) and "CUDNN_STATUS_INTERNAL_ERROR_{HOST,DEVICE}_ALLOCATION_FAILED",
  "CUDNN_STATUS_ALLOC_FAILED_{HOST,DEVICE}_MEMORY" (cuDNN 9).
- torch's CPU allocator ("DefaultCPUAllocator: can't allocate memory", "... not enough memory"), C++ std::bad_alloc
  and ENOMEM ("[Errno 12] Cannot allocate memory").
- "NVML_SUCCESS == r INTERNAL ASSERT FAILED": on Jetson (no NVML) torch's CUDA allocator fails this assert while
  reporting an OOM, instead of raising OutOfMemoryError (pytorch/pytorch#112377, #185240).
- Jetson's NvMap driver ("NvMapMemAllocInternalTagged: 1075072515 error 12", "NvMapMemHandleAlloc failed: error
  12"; 12 is ENOMEM). NvMap prints these on stderr and the program may recover (frameworks retry smaller
  allocations), so they count only beside a CUDA-side failure, or when the process left no Python error at all.

Not out of memory, recorded as `error`: "CUBLAS_STATUS_NOT_INITIALIZED" and "CUDNN_STATUS_NOT_INITIALIZED" (can
follow an OOM at handle creation, but equally a driver/library mismatch: guessing would prune wrongly), and a
too-small cuDNN workspace (cuDNN reports it as a CUDNN_STATUS_BAD_PARAM*: the caller passed a buffer smaller than
the algorithm needs, which no amount of free memory changes; "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE" is not a cuDNN
status at all, though some projects list it).
"""

from __future__ import annotations

import re
from typing import Optional

__all__ = ["ERROR", "MAX_LINE", "OOM", "classify_error_text", "classify_exception", "is_oom_text"]

OOM = "oom"
ERROR = "error"
MAX_LINE = 300  # characters of the one line kept in a record's `error`

_OOM_PATTERNS = re.compile(
    "|".join(
        [
            r"out of memory",
            r"^(?:[A-Za-z_]\w*\.)*(?:OutOfMemoryError|MemoryError)\b",
            r"CUBLAS_STATUS_ALLOC_FAILED",
            r"CUDNN_STATUS_ALLOC_FAILED",
            r"CUDNN_STATUS_INTERNAL_ERROR_(?:HOST|DEVICE)_ALLOCATION_FAILED",
            r"can't allocate memory",
            r"not enough memory: you tried to allocate",
            r"std::bad_alloc",
            r"cannot allocate memory",
            r"NVML_SUCCESS == r INTERNAL ASSERT FAILED",
        ]
    ),
    re.IGNORECASE,
)
_NVMAP_ENOMEM = re.compile(r"NvMap\w*:?\s.*\berror 12\b")
_CUDA_SIDE = re.compile(r"cuda|cublas|cudnn|nvml|nvmap|cudaMalloc", re.IGNORECASE)
_TRACEBACK = "Traceback (most recent call last):"
# Flower's error reply: "<class 'torch.OutOfMemoryError'>:<'CUDA out of memory. ...'>"; in simulation the
# exception is wrapped first, as "\nException ClientAppException occurred. Message: <the original's text>".
_FLOWER_REASON = re.compile(r"^<class '([\w.]+)'>:<'(.*)'>$", re.DOTALL)
_FLOWER_WRAPPER = re.compile(r"^\s*Exception \w+ occurred\. Message: ")
_OOM_CLASS_NAMES = ("OutOfMemoryError", "MemoryError")


def _clip(line: str) -> str:
    return line.strip()[:MAX_LINE]


def _nonblank(lines: list[str]) -> list[str]:
    return [line.strip() for line in lines if line.strip()]


def _final_exception(lines: list[str]) -> Optional[list[str]]:
    """The lines of the last exception of a Python traceback (its `Type: message` line and what follows), or None
    where the text holds no traceback. Frames and source lines are indented; the exception line is not."""
    starts = [i for i, line in enumerate(lines) if line.startswith(_TRACEBACK)]
    if not starts:
        return None
    after = lines[starts[-1] + 1 :]
    for index, line in enumerate(after):
        if line.strip() and not line[:1].isspace():
            return _nonblank(after[index:])
    return []


def _first_oom_line(lines: list[str]) -> Optional[str]:
    return next((line for line in lines if _OOM_PATTERNS.search(line)), None)


def is_oom_text(text: str) -> bool:
    """Whether one message (no traceback needed) carries an out-of-memory signature."""
    return _first_oom_line(_nonblank(text.splitlines())) is not None


def _classify_lines(block: list[str], headline: str, whole: list[str]) -> tuple[str, str]:
    """`block`: the failure's own message lines; `headline`: its one line; `whole`: every line (NvMap noise)."""
    oom_line = _first_oom_line(block)
    if oom_line is not None:
        return OOM, _clip(headline if _OOM_PATTERNS.search(headline) else oom_line)
    nvmap = next((line for line in _nonblank(whole) if _NVMAP_ENOMEM.search(line)), None)
    if nvmap is not None and (not headline or _CUDA_SIDE.search(headline)):
        only_nvmap = not headline or headline.startswith("NvMap")  # a native death: NvMap's lines are all there is
        return OOM, _clip(nvmap if only_nvmap else f"{headline} (after {nvmap})")
    return ERROR, _clip(headline)


def _unwrap_flower_reason(text: str) -> str:
    """Flower's `<class 'X'>:<'message'>` as `X: message` (the class's own name), other text unchanged."""
    match = _FLOWER_REASON.match(text.strip())
    if match is None:
        return text
    name, message = match.groups()
    wrapper = _FLOWER_WRAPPER.match(message)
    return message[wrapper.end() :] if wrapper else f"{name.rsplit('.', 1)[-1]}: {message}"


def classify_error_text(text: str) -> tuple[str, str]:
    """Stderr of a failed process, a Flower client's error reply, or any error text -> (status, one line).

    With a Python traceback the line is the final exception's `Type: message` line; without one, the line that
    carries an out-of-memory signature, else the last non-blank line (what a native crash leaves last).
    """
    lines = _unwrap_flower_reason(str(text)).splitlines()
    block = _final_exception(lines)
    if block is None:
        block = _nonblank(lines)
        headline = _first_oom_line(block) or (block[-1] if block else "")
        return _classify_lines(block, headline, lines)
    return _classify_lines(block, block[0] if block else "", lines)


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """An exception raised while measuring -> (status, `Type: first line of its message`).

    The class decides first (torch.OutOfMemoryError and MemoryError are out of memory whatever they say, checked by
    name so this module needs no torch); otherwise its message is classified like error text. The first line of
    the message is kept, not the last: CUDA errors end with generic advice ("Compile with TORCH_USE_CUDA_DSA").
    """
    name = type(exc).__name__
    block = _nonblank(str(exc).splitlines())
    headline = f"{name}: {block[0]}" if block else name
    if any(cls.__name__ in _OOM_CLASS_NAMES for cls in type(exc).__mro__):
        return OOM, _clip(headline)
    status, line = _classify_lines(block, headline, block)
    # the signature may sit on a later line of the message; keep the type name in front of it
    return status, line if line.startswith(name) else _clip(f"{name}: {line}")
