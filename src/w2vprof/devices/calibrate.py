"""This machine's measured ceilings: dense matmul FLOP/s in fp32 and in the mixed dtype, and memory bandwidth.

What is measured (every timing with the device synchronised before and after, `time.perf_counter`):
- matmul: `torch.mm` of two n x n matrices into a preallocated output (n = 2048 by default), 2 n^3 FLOPs each;
  in float32 and in the mixed-precision dtype (bfloat16 on the CPU, float16 on CUDA and MPS, as training uses);
- memory bandwidth: `dst.copy_(src)` of a 256 MiB float32 buffer (less where the device has little memory):
  each copy reads and writes every byte, so 2 x size bytes per copy.
Each is run once untimed-for-the-result (the warmup: thread pools start, pages are touched, kernels are chosen;
the first copy of a fresh buffer is several times slower), then `repeats` times. The rate kept is the BEST run,
not the median: a ceiling is what the machine can do, and everything that disturbs a run (other processes, a
clock still ramping, an interrupt) only ever makes it slower, so the fastest run is the closest estimate of the
ceiling (STREAM reports its best run for the same reason).

A fixed time budget, on any device: calibrating takes seconds on a slow board or under emulation too (it took
5 minutes under qemu when its first product was a 2048^2 one). Each measurement gets a share of TOTAL_BUDGET_SEC
(at most MEASUREMENT_BUDGET_SEC; one that overran leaves the next less). Sizes grow from small to the asked size,
a step at a time, only while the next is predicted (from this one's time) to take at most a quarter of the share:
the matrix starts at 64^2 and doubles (8x the work), the copy starts at 1 MiB and quadruples. A size that took
over twice that all the same (it fell out of a cache) is given up for the one before. The last size's first run
is its warmup; then at most `repeats` timed runs, fewer (at least 2) where they would take over half the share.
Where a size or the repeats were cut, the calibration's note says so.

Results are cached per device fingerprint (w2vprof.devices.identify) and thread count in
`$XDG_CACHE_HOME/w2vprof/calibration-<fingerprint>-<threads>threads.json` (default `~/.cache/w2vprof`), written
atomically, so sweeps at `--threads 1` and at the default each keep theirs; an entry made by another torch version
or mixed dtype is measured again, and so is a file that does not read back as a calibration (corrupt, truncated,
edited).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, Tuple, Union

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from w2vprof.devices.profiles import DeviceProfile

__all__ = [
    "Calibration",
    "CalibrationOps",
    "TorchOps",
    "calibrate",
    "load_or_calibrate",
    "cached_calibration",
    "cache_path",
    "cache_folder",
    "matching_profile",
    "mixed_dtype_name",
]

#: Bumped when what a field means changes: older cache files are then measured again.
CACHE_VERSION = 1
MATMUL_SIZE = 2048
#: The first (smallest) matrix tried: a few hundred kFLOP, quick on anything.
MIN_MATMUL_SIZE = 64
COPY_BYTES = 256 * 2**20
MIN_COPY_BYTES = 2**20
#: The copy buffer takes at most this fraction of the device's memory ceiling (two buffers are allocated).
COPY_MEMORY_FRACTION = 1 / 16
REPEATS = 5
#: Seconds one measurement (fp32 matmul, mixed matmul, copy) may take: sizing, warmup and timed runs.
MEASUREMENT_BUDGET_SEC = 4.0
#: Seconds the whole calibration (three measurements) may take.
TOTAL_BUDGET_SEC = 3 * MEASUREMENT_BUDGET_SEC


@dataclass(frozen=True)
class Calibration:
    device: str  # torch device kind: cpu | cuda | mps
    device_fingerprint: str
    device_name: str
    peak_flops_fp32_measured: float  # FLOP/s, best run of an n x n fp32 torch.mm
    peak_flops_mixed_measured: Optional[float]  # FLOP/s in `mixed_dtype`; None where that matmul fails
    mixed_dtype: str  # bfloat16 | float16
    mem_bw_measured: float  # bytes read + written per second, best run of a large copy
    matmul_size_fp32: int  # n actually used (smaller than asked on a slow device)
    matmul_size_mixed: int
    copy_bytes: int  # size of one buffer (smaller than asked on a slow device); each copy moves twice this
    repeats: int  # timed runs asked for per measurement (fewer where a run is slow)
    peak_flops_fp32_vendor: Optional[float]  # FLOP/s from the shipped device profiles, where known
    peak_flops_mixed_vendor: Optional[float]
    vendor_profile: str  # the profile those came from ("" when none matches)
    threads: int  # torch.get_num_threads() while measuring (the CPU rate depends on it)
    torch_version: str
    measured_at: str  # UTC, ISO 8601
    note: str = ""  # why the mixed rate is missing, why the result was not cached, ...
    cache_version: int = CACHE_VERSION

    def record_fields(self) -> dict[str, Optional[float]]:
        """The result-record fields (issue 14): measured ceilings, and vendor peaks where known."""
        return {
            "peak_flops_fp32_measured": self.peak_flops_fp32_measured,
            "peak_flops_mixed_measured": self.peak_flops_mixed_measured,
            "mem_bw_measured": self.mem_bw_measured,
            "peak_flops_fp32_vendor": self.peak_flops_fp32_vendor,
            "peak_flops_mixed_vendor": self.peak_flops_mixed_vendor,
        }

    def summary_lines(self) -> list[str]:
        """What `devices --calibrate` prints: one line per ceiling."""
        mixed = (
            f"{self.peak_flops_mixed_measured / 1e9:.1f} GFLOP/s ({self.matmul_size_mixed}^2 matmul)"
            if self.peak_flops_mixed_measured
            else f"not measured ({self.note})"
        )
        lines = [
            f"{self.device_name or self.device} [{self.device_fingerprint}], {self.threads} threads, "
            f"torch {self.torch_version}, measured {self.measured_at}",
            f"fp32 matmul:    {self.peak_flops_fp32_measured / 1e9:.1f} GFLOP/s ({self.matmul_size_fp32}^2 matmul)",
            f"{self.mixed_dtype} matmul: {mixed}",
            f"memory copy:    {self.mem_bw_measured / 1e9:.1f} GB/s read + written "
            f"({self.copy_bytes >> 20} MiB buffer)",
        ]
        if self.vendor_profile:
            vendor = [
                f"{name} {value / 1e12:.2f} TFLOP/s"
                for name, value in (("fp32", self.peak_flops_fp32_vendor), ("fp16", self.peak_flops_mixed_vendor))
                if value
            ]
            lines.append(f"vendor peak ({self.vendor_profile}): {', '.join(vendor) or 'not listed'}")
        return lines

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        """A calibration from its JSON; ValueError for anything else (a missing field, a wrong type)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        missing = [f.name for f in fields(cls) if f.name not in data and f.name not in ("note", "cache_version")]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        calibration = cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
        _check_types(calibration)
        return calibration


def _check_types(calibration: Calibration) -> None:
    numbers = (calibration.peak_flops_fp32_measured, calibration.mem_bw_measured)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in numbers):
        raise ValueError("a measured rate is not a positive number")
    optional = (
        calibration.peak_flops_mixed_measured,
        calibration.peak_flops_fp32_vendor,
        calibration.peak_flops_mixed_vendor,
    )
    if not all(v is None or (isinstance(v, (int, float)) and v > 0) for v in optional):
        raise ValueError("an optional rate is neither empty nor a positive number")
    texts = (calibration.device, calibration.device_fingerprint, calibration.mixed_dtype, calibration.torch_version)
    if not all(isinstance(v, str) for v in texts) or not isinstance(calibration.threads, int):
        raise ValueError("a field has the wrong type")


# -- what is timed -----------------------------------------------------------------------------------------------
class CalibrationOps(Protocol):
    """The operations calibration times; tests inject fakes that advance a fake clock."""

    def matmul(self, n: int, dtype: str) -> Callable[[], object]:
        """Prepare two n x n matrices of `dtype` and return a function doing one product."""

    def copy(self, nbytes: int) -> Callable[[], object]:
        """Prepare two buffers of `nbytes` and return a function copying one into the other."""

    def sync(self) -> None:
        """Wait until the device has finished everything queued."""


def machine_load() -> Optional[Tuple[float, int]]:
    """The 1-minute load average and the number of logical CPUs, or None where there is no load average (Windows)."""
    try:
        return os.getloadavg()[0], os.cpu_count() or 1
    except (AttributeError, OSError):
        return None


def busy_note(load: Optional[Tuple[float, int]]) -> str:
    """The calibration's note when it started on a machine already busy (a load average of at least one per CPU):
    other work takes cores from the products, so the ceilings come out low and every share of them high. ""
    otherwise."""
    if load is None or load[0] < load[1]:
        return ""
    return (
        f"measured while the machine was busy (load average {load[0]:.1f} on {load[1]} CPUs): the ceilings may be "
        "low; `w2vprof devices --calibrate --refresh` on a quiet machine"
    )


class TorchOps:
    def __init__(self, device: str) -> None:
        self.device = device

    def matmul(self, n: int, dtype: str) -> Callable[[], object]:
        import torch

        kind = getattr(torch, dtype)
        a = torch.randn(n, n, device=self.device).to(kind)
        b = torch.randn(n, n, device=self.device).to(kind)
        out = torch.empty(n, n, device=self.device, dtype=kind)
        return lambda: torch.mm(a, b, out=out)

    def copy(self, nbytes: int) -> Callable[[], object]:
        import torch

        source = torch.ones(nbytes // 4, device=self.device)
        target = torch.empty_like(source)
        return lambda: target.copy_(source)

    def sync(self) -> None:
        from w2vprof.devices.sync import synchronize

        synchronize(self.device)


def _run_seconds(run: Callable[[], object], ops: CalibrationOps, clock: Callable[[], float]) -> float:
    ops.sync()
    start = clock()
    run()
    ops.sync()
    return clock() - start


@dataclass(frozen=True)
class Measured:
    """One measurement: its rate, the size it was taken at, and the timed runs it had."""

    rate: float  # FLOP/s or bytes/s
    size: int  # n of an n x n product, or bytes of one copy buffer
    runs: int  # timed runs after the warmup


def _sized(
    prepare: Callable[[int], Callable[[], object]],
    sizes: list[int],
    growth: float,
    limit_s: float,
    ops: CalibrationOps,
    clock: Callable[[], float],
) -> tuple[Callable[[], object], int, float]:
    """(run, size, its first run's seconds): `sizes` tried smallest first, the next only while this one's time
    times `growth` (the next's extra work) stays within `limit_s`. The smallest is run twice (the very first run
    pays for thread pools and kernel choice, and would stop the growth too early); the last one's run is its
    warmup. A size that took more than twice the limit all the same (it fell out of a cache: slower per FLOP than
    the one before) is given up for the one before, whose buffers are still there."""
    run = prepare(sizes[0])
    _run_seconds(run, ops, clock)
    first = _run_seconds(run, ops, clock)
    size = sizes[0]
    for bigger in sizes[1:]:
        if first * growth > limit_s:
            break
        previous = run, size, first
        run, size = prepare(bigger), bigger
        first = _run_seconds(run, ops, clock)
        if first > 2 * limit_s:
            return previous
    return run, size, first


def _best(
    run: Callable[[], object],
    size: int,
    first: float,
    work: float,
    budget_s: float,
    repeats: int,
    ops: CalibrationOps,
    clock: Callable[[], float],
) -> Measured:
    """Best of up to `repeats` timed runs (at least 2) within half the measurement's budget."""
    count = max(2, min(repeats, int(budget_s / 2 / first))) if first > 0 else repeats
    return Measured(work / min(_run_seconds(run, ops, clock) for _ in range(count)), size, count)


def _doubling(smallest: int, largest: int, factor: int) -> list[int]:
    """smallest, smallest*factor, ... up to largest (largest itself last), or just largest when it is smaller."""
    sizes = [min(smallest, largest)]
    while sizes[-1] * factor <= largest:
        sizes.append(sizes[-1] * factor)
    return sizes if sizes[-1] == largest else [*sizes, largest]


def measure_matmul(
    ops: CalibrationOps,
    n: int,
    dtype: str,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
    budget_s: float = MEASUREMENT_BUDGET_SEC,
) -> Measured:
    """FLOP/s of an n x n product, or of the largest smaller one (64^2, 128^2, ...) that fits `budget_s`."""
    sizes = _doubling(MIN_MATMUL_SIZE, n, 2)
    run, size, first = _sized(lambda m: ops.matmul(m, dtype), sizes, 8, budget_s / 4, ops, clock)
    return _best(run, size, first, 2 * size**3, budget_s, repeats, ops, clock)


def measure_copy(
    ops: CalibrationOps,
    nbytes: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
    budget_s: float = MEASUREMENT_BUDGET_SEC,
) -> Measured:
    """Bytes read + written per second copying an `nbytes` buffer (or a smaller one that fits `budget_s`)."""
    run, size, first = _sized(ops.copy, _doubling(MIN_COPY_BYTES, nbytes, 4), 4, budget_s / 4, ops, clock)
    return _best(run, size, first, 2 * size, budget_s, repeats, ops, clock)


class _Budget:
    """What is left of TOTAL_BUDGET_SEC, shared out among the measurements still to come."""

    def __init__(self, clock: Callable[[], float], total_s: float, measurements: int) -> None:
        self.clock, self.deadline, self.left = clock, clock() + total_s, measurements

    def share(self) -> float:
        share = min(MEASUREMENT_BUDGET_SEC, max(0.0, self.deadline - self.clock()) / self.left)
        self.left -= 1
        return share


def _cuts(name: str, measured: Measured, asked_size: int, repeats: int, unit: Callable[[int], str]) -> str:
    """'float32 matmul 512^2 (not 2048^2), 3 of 5 repeats' for what the budget cut; '' when nothing was."""
    cut = [f"{unit(measured.size)} (not {unit(asked_size)})"] if measured.size < asked_size else []
    cut += [f"{measured.runs} of {repeats} repeats"] if measured.runs < repeats else []
    return f"{name} {', '.join(cut)}" if cut else ""


# -- calibration -------------------------------------------------------------------------------------------------
def mixed_dtype_name(device: str, dtype_mixed: Union[None, str, torch.dtype] = None) -> str:
    """The mixed dtype's name: as given (a torch dtype or its name), else the one training uses on `device`."""
    if dtype_mixed is None:
        return "bfloat16" if device == "cpu" else "float16"
    name = str(dtype_mixed)
    return name[len("torch.") :] if name.startswith("torch.") else name


def calibrate(
    device: str,
    dtype_mixed: Union[None, str, torch.dtype] = None,
    *,
    ops: Optional[CalibrationOps] = None,
    clock: Callable[[], float] = time.perf_counter,
    repeats: int = REPEATS,
    matmul_size: int = MATMUL_SIZE,
    identity: Optional[dict[str, Any]] = None,
    load: Optional[Callable[[], Optional[Tuple[float, int]]]] = None,
) -> Calibration:
    """Measure this machine's ceilings for a torch device kind (cpu | cuda | mps); see the module's notes.

    `identity`: w2vprof.devices.identify(device), read here when not given. `load`: the machine's load before
    measuring (machine_load; with injected `ops`, none unless given), for busy_note.
    """
    import torch

    from w2vprof.devices import identify

    if load is None:
        load = machine_load if ops is None else (lambda: None)
    started_busy = busy_note(load())  # before measuring: the calibration's own products add to the average
    identity = identity if identity is not None else identify(device)
    ops = ops if ops is not None else TorchOps(device)
    mixed = mixed_dtype_name(device, dtype_mixed)
    budget = _Budget(clock, TOTAL_BUDGET_SEC, 3)
    fp32 = measure_matmul(ops, matmul_size, "float32", repeats, clock, budget.share())
    # never larger than fp32's: a size fp32 had to give up (a cache cliff, the budget) is not tried again
    mixed_measured, note = _mixed_rate(ops, fp32.size, mixed, repeats, clock, budget.share())
    copy_bytes = _copy_bytes(identity.get("memory_ceiling_bytes"))
    copy = measure_copy(ops, copy_bytes, repeats, clock, budget.share())
    cuts = [
        _cuts("float32 matmul", fp32, matmul_size, repeats, _square),
        _cuts(f"{mixed} matmul", mixed_measured, matmul_size, repeats, _square) if mixed_measured else "",
        _cuts("copy", copy, copy_bytes, repeats, _mib),
    ]
    note = _joined_note(note, cuts, started_busy)
    profile = matching_profile(identity)
    return Calibration(
        device=device,
        device_fingerprint=str(identity.get("device_fingerprint", "")),
        device_name=str(identity.get("device_name", "")),
        peak_flops_fp32_measured=fp32.rate,
        peak_flops_mixed_measured=mixed_measured.rate if mixed_measured else None,
        mixed_dtype=mixed,
        mem_bw_measured=copy.rate,
        matmul_size_fp32=fp32.size,
        matmul_size_mixed=mixed_measured.size if mixed_measured else 0,
        copy_bytes=copy.size,
        repeats=repeats,
        peak_flops_fp32_vendor=_tflops(profile.peak_fp32_tflops) if profile else None,
        peak_flops_mixed_vendor=_tflops(profile.peak_fp16_tflops) if profile else None,
        vendor_profile=profile.name if profile else "",
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        note=note,
    )


def _joined_note(mixed_note: str, cuts: list[str], busy: str) -> str:
    """The calibration's note: why the mixed rate is missing, what the budget cut, whether the machine was busy."""
    budget_note = f"within the {TOTAL_BUDGET_SEC:g} s calibration budget: " + "; ".join(c for c in cuts if c)
    return "; ".join(filter(None, [mixed_note, budget_note if any(cuts) else "", busy]))


def _mixed_rate(
    ops: CalibrationOps, n: int, dtype: str, repeats: int, clock: Callable[[], float], budget_s: float
) -> tuple[Optional[Measured], str]:
    """(the measurement, "") or (None, why) where this device cannot multiply in `dtype`."""
    try:
        return measure_matmul(ops, n, dtype, repeats, clock, budget_s), ""
    except (RuntimeError, TypeError, AttributeError) as exc:  # no such dtype, or no kernel for it here
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"{dtype} matmul failed: {first_line}"


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:g} MiB"


def _square(n: int) -> str:
    return f"{n}^2"


def _copy_bytes(memory_ceiling: Any) -> int:
    """256 MiB, or less where that would take more than 1/16 of the device's memory (two buffers)."""
    if isinstance(memory_ceiling, (int, float)) and memory_ceiling > 0:
        fitted = int(memory_ceiling * COPY_MEMORY_FRACTION) // 2**20 * 2**20
        return max(2**20, min(COPY_BYTES, fitted))
    return COPY_BYTES


def _tflops(value: Optional[float]) -> Optional[float]:
    return value * 1e12 if value else None


def matching_profile(
    identity: dict[str, Any], profiles: Optional[list[DeviceProfile]] = None
) -> Optional[DeviceProfile]:
    """The shipped device profile naming this device (its name appears in the device, GPU or board name; the
    longest such name wins: "Raspberry Pi 4" for "Raspberry Pi 4 Model B Rev 1.4"), or None."""
    from w2vprof.devices.profiles import load_profiles

    names = [str(identity.get(key) or "").lower() for key in ("device_name", "gpu_name", "board")]
    candidates = [
        p
        for p in (profiles if profiles is not None else load_profiles())
        if p.name and any(p.name.lower() in name for name in names)
    ]
    return max(candidates, key=lambda p: len(p.name)) if candidates else None


# -- the cache ---------------------------------------------------------------------------------------------------
def cache_folder() -> Path:
    """$XDG_CACHE_HOME/w2vprof, or ~/.cache/w2vprof."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "w2vprof"


def cache_path(fingerprint: str, threads: int, folder: Optional[Path] = None) -> Path:
    """The cache file of one device at one thread count (the rates depend on both)."""
    return (folder if folder is not None else cache_folder()) / f"calibration-{fingerprint}-{threads}threads.json"


def cached_calibration(
    device: str,
    dtype_mixed: Union[None, str, torch.dtype] = None,
    folder: Optional[Path] = None,
    identity: Optional[dict[str, Any]] = None,
) -> Optional[Calibration]:
    """The cached calibration for this device, or None: none yet, unreadable or corrupt, or made under another
    torch version, thread count or mixed dtype (those change the rates)."""
    import torch

    from w2vprof.devices import identify

    identity = identity if identity is not None else identify(device)
    path = cache_path(str(identity["device_fingerprint"]), torch.get_num_threads(), folder)
    try:
        cached = Calibration.from_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, TypeError):  # json's errors are ValueErrors
        return None
    current = (CACHE_VERSION, torch.__version__, torch.get_num_threads(), mixed_dtype_name(device, dtype_mixed), device)
    if (cached.cache_version, cached.torch_version, cached.threads, cached.mixed_dtype, cached.device) != current:
        return None
    return cached


def load_or_calibrate(
    device: str,
    refresh: bool = False,
    dtype_mixed: Union[None, str, torch.dtype] = None,
    folder: Optional[Path] = None,
    **calibrate_options: Any,
) -> Calibration:
    """The cached calibration for this device, else (or with `refresh`) a new one, written to the cache.

    A cache that cannot be written (read-only home, full disk) does not fail the caller: the calibration comes
    back with the reason in `note`. `calibrate_options` go to `calibrate` (ops, clock, repeats, matmul_size).
    """
    from w2vprof.devices import identify
    from w2vprof.errors import W2vprofError
    from w2vprof.files import write_text_atomic

    identity = calibrate_options.pop("identity", None) or identify(device)
    if not refresh:
        cached = cached_calibration(device, dtype_mixed, folder, identity)
        if cached is not None:
            return cached
    calibration = calibrate(device, dtype_mixed, identity=identity, **calibrate_options)
    path = cache_path(calibration.device_fingerprint, calibration.threads, folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, calibration.to_json())
    except (OSError, W2vprofError) as exc:
        reason = f"not cached ({path}: {getattr(exc, 'strerror', None) or exc})"
        calibration = replace(calibration, note="; ".join(filter(None, [calibration.note, reason])))
    return calibration
