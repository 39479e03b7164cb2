"""Memory that answers "does it fit" (issue 16): the allocator's peak and, separately, the system-level peak (on
unified memory the GPU's allocations come out of the same RAM), the CUDA context from NVML on discrete GPUs, and
the figure feasibility fits. Every reader runs on fake /proc trees, a fake torch and a fake pynvml.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from fake_nvml import FakeBoard, FakeCudaProperties, FakePynvml
from w2vprof.analysis.feasibility import (
    FIT_PEAK,
    FIT_RESERVED,
    FIT_RESERVED_CONTEXT,
    FIT_SYSTEM,
    feasibility,
    fit_mem_bytes,
    fit_memory,
)
from w2vprof.devices.profiles import DeviceProfile
from w2vprof.measure.memory import SYS_SOURCE_UNIFIED, SystemPeakMemory, cuda_context_bytes, nvml_process_used_bytes
from w2vprof.records import ResultRecord

GIB = 2**30
KIB = 1024


def _proc(root: Path, rss_kib: int, hwm_kib: int, clear_refs: bool = True) -> None:
    me = root / "proc" / "self"
    me.mkdir(parents=True, exist_ok=True)
    (me / "status").write_text(f"Name:\tpython\nVmHWM:\t{hwm_kib} kB\nVmRSS:\t{rss_kib} kB\n")
    if clear_refs:
        (me / "clear_refs").write_text("")
    else:
        (me / "clear_refs").mkdir(exist_ok=True)  # writing to it fails, as where the kernel refuses


def _meminfo(root: Path, available_kib: int) -> None:
    (root / "proc").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "meminfo").write_text(
        f"MemTotal:       8000000 kB\nMemFree:          100000 kB\nMemAvailable:   {available_kib} kB\n"
    )


def _fake_torch(reserved_bytes: int) -> SimpleNamespace:
    return SimpleNamespace(cuda=SimpleNamespace(memory_reserved=lambda: reserved_bytes))


# -- the system-level peak ---------------------------------------------------------------------------------------
def test_unified_memory_peak_is_the_footprint_going_in_plus_the_drop_in_mem_available(tmp_path):
    """Jetson: 1 GiB resident + 0.5 GiB in torch's reserve at the start, MemAvailable falls by 2 GiB during the
    steps (the GPU's growth, which the resident set never shows)."""
    _proc(tmp_path, rss_kib=GIB // KIB, hwm_kib=GIB // KIB + 1000)
    _meminfo(tmp_path, 6 * GIB // KIB)
    memory = SystemPeakMemory(
        "cuda", unified=True, root=str(tmp_path), torch_module=_fake_torch(GIB // 2), interval_s=3600
    )
    memory.start()
    _meminfo(tmp_path, 4 * GIB // KIB)
    peak = memory.stop()
    assert peak.source == SYS_SOURCE_UNIFIED
    assert peak.bytes == GIB + GIB // 2 + 2 * GIB
    assert (tmp_path / "proc" / "self" / "clear_refs").read_text() == "5"  # VmHWM reset before the steps


def test_unified_memory_peak_is_never_below_the_resident_high_water_mark(tmp_path):
    """A CPU-side spike between two MemAvailable polls is still in VmHWM."""
    _proc(tmp_path, rss_kib=GIB // KIB, hwm_kib=5 * GIB // KIB)
    _meminfo(tmp_path, 6 * GIB // KIB)
    memory = SystemPeakMemory("cuda", unified=True, root=str(tmp_path), torch_module=_fake_torch(0), interval_s=3600)
    memory.start()
    peak = memory.stop()  # MemAvailable did not move
    assert (peak.bytes, peak.source) == (5 * GIB, SYS_SOURCE_UNIFIED)


def test_the_drop_is_sampled_during_the_steps_not_only_at_the_end(tmp_path):
    _proc(tmp_path, rss_kib=GIB // KIB, hwm_kib=GIB // KIB)
    _meminfo(tmp_path, 6 * GIB // KIB)
    memory = SystemPeakMemory("cuda", unified=True, root=str(tmp_path), torch_module=_fake_torch(0), interval_s=0.001)
    memory.start()
    _meminfo(tmp_path, 3 * GIB // KIB)
    deadline = time.monotonic() + 10
    while memory.sampler.lowest_bytes != 3 * GIB and time.monotonic() < deadline:
        time.sleep(0.005)
    _meminfo(tmp_path, 6 * GIB // KIB)  # freed again before the end of the window
    assert memory.stop().bytes == GIB + 3 * GIB


@pytest.mark.parametrize("clear_refs, source", [(True, "vmhwm"), (False, "vmhwm_since_process_start")])
def test_cpu_and_discrete_gpu_hosts_report_the_resident_high_water_mark(tmp_path, clear_refs, source):
    _proc(tmp_path, rss_kib=GIB // KIB, hwm_kib=3 * GIB // KIB, clear_refs=clear_refs)
    _meminfo(tmp_path, 6 * GIB // KIB)
    memory = SystemPeakMemory("cpu", unified=False, root=str(tmp_path))
    memory.start()
    _meminfo(tmp_path, 1 * GIB // KIB)  # other processes: not this process's memory on a CPU
    peak = memory.stop()
    assert (peak.bytes, peak.source) == (3 * GIB, source)


def test_unified_memory_without_meminfo_falls_back_to_the_resident_peak(tmp_path):
    """Apple silicon has no /proc/meminfo: the process's own peak is what there is."""
    _proc(tmp_path, rss_kib=GIB // KIB, hwm_kib=2 * GIB // KIB)
    memory = SystemPeakMemory("mps", unified=True, root=str(tmp_path))
    memory.start()
    assert memory.stop() == type(memory.stop())(2 * GIB, "vmhwm")


def test_a_profile_records_both_peaks():
    from w2vprof.measure.engine import ProfileConfig, profile_configuration

    record = profile_configuration(
        ProfileConfig(model="tiny", batch=1, seconds=0.5, repeats=1, device="cpu", telemetry=False)
    ).record
    assert record.peak_mem_source.startswith("rss_hwm") and record.sys_peak_mem_source.startswith("vmhwm")
    assert record.sys_peak_mem_bytes > 100 * 2**20 and record.cuda_context_bytes is None


def test_a_unified_memory_device_profile_uses_the_mem_available_formula(monkeypatch):
    """devices.identify marks unified memory by its ceiling (os_available); the engine then samples MemAvailable."""
    import w2vprof.devices as devices
    from w2vprof.measure.engine import ProfileConfig, profile_configuration

    real_identify = devices.identify
    monkeypatch.setattr(
        devices, "identify", lambda *a, **k: {**real_identify(*a, **k), "memory_ceiling_source": "os_available"}
    )
    record = profile_configuration(
        ProfileConfig(model="tiny", batch=1, seconds=0.5, repeats=1, device="cpu", telemetry=False)
    ).record
    assert record.status == "ok", record.error
    assert record.sys_peak_mem_source == SYS_SOURCE_UNIFIED and record.sys_peak_mem_bytes > 100 * 2**20


# -- discrete GPUs: the CUDA context from NVML ---------------------------------------------------------------------
class ProcessListingPynvml(FakePynvml):
    """FakePynvml plus the per-process call (usedGpuMemory per pid, as NVML lists them)."""

    def __init__(self, boards, used_by_pid):
        super().__init__(boards)
        self.used_by_pid = used_by_pid

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.used_by_pid.items()]


BOARD = FakeBoard("Fake H100", "GPU-aaaa", "00000000:3B:00.0")
PROPERTIES = FakeCudaProperties("Fake H100", uuid="aaaa")


def test_nvml_per_process_memory_of_this_process():
    pynvml = ProcessListingPynvml([BOARD], {os.getpid(): 3 * GIB, 1: 5 * GIB})
    assert nvml_process_used_bytes(os.getpid(), pynvml, PROPERTIES) == 3 * GIB
    assert nvml_process_used_bytes(12345678, pynvml, PROPERTIES) is None  # in a container NVML lists host pids
    assert nvml_process_used_bytes(os.getpid(), ProcessListingPynvml([BOARD], {os.getpid(): None}), PROPERTIES) is None
    assert nvml_process_used_bytes(os.getpid(), FakePynvml([BOARD], fail_init=True), PROPERTIES) is None


def test_the_cuda_context_is_nvmls_figure_minus_torchs_reserve():
    pynvml = ProcessListingPynvml([BOARD], {os.getpid(): 3 * GIB})
    assert cuda_context_bytes(_fake_torch(2 * GIB), pynvml, PROPERTIES) == GIB
    assert cuda_context_bytes(_fake_torch(0), ProcessListingPynvml([BOARD], {}), PROPERTIES) is None


# -- which figure answers "does it fit" ----------------------------------------------------------------------------
def _row(device: str, ceiling_source: str, **memory) -> ResultRecord:
    return ResultRecord(
        model="base",
        batch=1,
        seconds=1.0,
        device=device,
        memory_ceiling_source=ceiling_source,
        peak_mem_bytes=1 * GIB,
        **memory,
    )


@pytest.mark.parametrize(
    "row, expected",
    [
        (_row("cpu", "os_total", sys_peak_mem_bytes=2 * GIB), (2 * GIB, FIT_SYSTEM)),
        (_row("cuda", "os_available", sys_peak_mem_bytes=4 * GIB, peak_mem_reserved_bytes=GIB), (4 * GIB, FIT_SYSTEM)),
        (
            _row(
                "cuda",
                "cuda_total",
                sys_peak_mem_bytes=9 * GIB,
                peak_mem_reserved_bytes=2 * GIB,
                cuda_context_bytes=GIB // 2,
            ),
            (2 * GIB + GIB // 2, FIT_RESERVED_CONTEXT),
        ),
        (
            _row("cuda", "cuda_total", sys_peak_mem_bytes=9 * GIB, peak_mem_reserved_bytes=2 * GIB),
            (2 * GIB, FIT_RESERVED),
        ),
        (_row("mps", "os_available", sys_peak_mem_bytes=9 * GIB), (GIB, FIT_PEAK)),
        (_row("cpu", "os_total"), (GIB, FIT_PEAK)),  # a row written before schema 2
        (replace(_row("cpu", "os_total"), peak_mem_bytes=None), (None, "")),
    ],
    ids=["cpu", "jetson", "gpu+context", "gpu", "mps", "schema-1", "nothing"],
)
def test_fit_mem_bytes_picks_the_figure_for_the_device(row, expected):
    assert fit_mem_bytes(row) == expected


def test_feasibility_of_jetson_rows_fits_the_system_peak_not_the_allocators():
    """The allocator saw 0.5 + 0.25 GB per batch-second; the board's RAM lost 1.5 + 0.5 GB per batch-second (context,
    reserve, CPU side): only the second says the base model at 5.5 s does not fit in 4 GB."""
    rows = [
        ResultRecord(
            model="base",
            batch=1,
            seconds=s,
            device="cuda",
            memory_ceiling_source="os_available",
            peak_mem_bytes=int((0.5 + 0.25 * s) * 1e9),
            sys_peak_mem_bytes=int((1.5 + 0.5 * s) * 1e9),
            sys_peak_mem_source=SYS_SOURCE_UNIFIED,
        )
        for s in (1.0, 2.0, 4.0)
    ]
    (fit,) = fit_memory(rows).fits
    assert fit.memory_source == FIT_SYSTEM
    assert fit.intercept_bytes == pytest.approx(1.5e9) and fit.bytes_per_batch_second == pytest.approx(0.5e9)
    board = DeviceProfile("Board 4GB", "edge", 4.0, True, None, None, True, "test")
    (row,) = feasibility(fit_memory(rows), [board], usable_fraction=1.0, batches=(1,), target_seconds=5.5).rows
    assert not row.fits and row.memory_at_target_gb == pytest.approx(1.5 + 0.5 * 5.5)
    assert row.max_seconds == pytest.approx((4.0 - 1.5) / 0.5)
