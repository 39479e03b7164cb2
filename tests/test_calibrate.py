"""Calibration (w2vprof.devices.calibrate): the arithmetic of measured ceilings, vendor peaks, and the cache.

Fake operations advance a fake clock by exactly (work / rate) seconds, times a slowdown that varies run to run
(the warmup slowest, the best timed run exactly 1x), so every rate is known in advance and exact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from w2vprof.devices.calibrate import (
    TOTAL_BUDGET_SEC,
    Calibration,
    cache_folder,
    cache_path,
    calibrate,
    load_or_calibrate,
    matching_profile,
)
from w2vprof.devices.profiles import DeviceProfile

GIB = 2**30
#: Slowdowns of successive runs of one prepared operation: the warmup, then the timed runs (best: 1.0).
SLOWDOWNS = (3.0, 1.5, 1.0, 1.25, 1.0, 2.0, 1.1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeOps:
    """Matmul at `rates[dtype]` FLOP/s and copies at `bandwidth` bytes/s, on a fake clock."""

    def __init__(self, clock: FakeClock, rates: dict[str, float], bandwidth: float) -> None:
        self.clock, self.rates, self.bandwidth = clock, rates, bandwidth
        self.prepared: list[tuple[str, int]] = []
        self.syncs = 0

    def matmul(self, n: int, dtype: str) -> Callable[[], None]:
        if dtype not in self.rates:
            raise RuntimeError(f"\"addmm_impl_cpu_\" not implemented for '{dtype}'\nsecond line")
        self.prepared.append((dtype, n))
        return self._runs(2 * n**3 / self.rates[dtype])

    def copy(self, nbytes: int) -> Callable[[], None]:
        self.prepared.append(("copy", nbytes))
        return self._runs(2 * nbytes / self.bandwidth)

    def sync(self) -> None:
        self.syncs += 1

    def _runs(self, seconds: float) -> Callable[[], None]:
        slowdowns = iter(SLOWDOWNS)

        def run() -> None:
            self.clock.now += seconds * next(slowdowns, 1.5)

        return run


IDENTITY = {
    "device_fingerprint": "0123abcd",
    "device_name": "Test box",
    "gpu_name": "",
    "board": "",
    "memory_ceiling_bytes": 64 * GIB,
}


def fake_calibration(
    rates: dict[str, float], bandwidth: float = 10e9, identity: dict[str, Any] = IDENTITY, **options: Any
) -> tuple[Calibration, FakeOps]:
    clock = FakeClock()
    ops = FakeOps(clock, rates, bandwidth)
    return calibrate("cpu", ops=ops, clock=clock, identity=identity, **options), ops


MATMUL_SIZES = [64, 128, 256, 512, 1024, 2048]
COPY_SIZES = [2**20, 4 * 2**20, 16 * 2**20, 64 * 2**20, 256 * 2**20]


def test_rates_are_work_over_the_best_run():
    rates = {"float32": 2 * 2048**3 / 0.1, "bfloat16": 2 * 2048**3 / 0.05}  # 0.1 s and 0.05 s per product
    calibration, ops = fake_calibration(rates, bandwidth=12.5e9)
    assert calibration.peak_flops_fp32_measured == pytest.approx(rates["float32"], rel=1e-12)
    assert calibration.peak_flops_mixed_measured == pytest.approx(rates["bfloat16"], rel=1e-12)
    assert calibration.mem_bw_measured == pytest.approx(12.5e9, rel=1e-12)
    assert calibration.mixed_dtype == "bfloat16"
    assert (calibration.matmul_size_fp32, calibration.matmul_size_mixed) == (2048, 2048)
    assert calibration.copy_bytes == 256 * 2**20
    # sizes grow from small ones (each predicted from the one before) up to the asked size
    assert ops.prepared == (
        [("float32", n) for n in MATMUL_SIZES]
        + [("bfloat16", n) for n in MATMUL_SIZES]
        + [("copy", n) for n in COPY_SIZES]
    )
    # each synced before and after: the smallest twice, every other size once (the last: its warmup), 5 timed
    assert ops.syncs == 2 * (2 * (2 + 5 + 5) + (2 + 4 + 5))
    assert calibration.note == ""  # nothing cut


def test_a_slow_matrix_product_is_measured_smaller_and_still_exact():
    rate = 2 * 2048**3 / 4.0  # 4 s per 2048^2 product: 0.1875 s warmup at 512^2, so 1024^2 is predicted at 1.5 s
    calibration, ops = fake_calibration({"float32": rate, "bfloat16": rate})
    assert calibration.matmul_size_fp32 == 512
    assert [n for dtype, n in ops.prepared if dtype == "float32"] == [64, 128, 256, 512]  # never 2048^2
    assert calibration.peak_flops_fp32_measured == pytest.approx(rate, rel=1e-12)
    assert calibration.note == (
        "within the 12 s calibration budget: float32 matmul 512^2 (not 2048^2); bfloat16 matmul 512^2 (not 2048^2)"
    )


def test_fewer_repeats_when_a_run_is_slow_but_at_least_two():
    rate = 2 * 2048**3 / 0.3  # warmup 0.9 s at 2048^2: int(2.0 / 0.9) = 2 timed runs, slowdowns 1.5 and 1.0
    calibration, ops = fake_calibration({"float32": rate, "bfloat16": rate})
    assert calibration.matmul_size_fp32 == 2048
    assert calibration.peak_flops_fp32_measured == pytest.approx(rate, rel=1e-12)
    assert ops.syncs == 2 * (2 * (2 + 5 + 2) + (2 + 4 + 5))  # two matmuls: sizing, then 2 timed runs each
    assert calibration.note.endswith("float32 matmul 2 of 5 repeats; bfloat16 matmul 2 of 5 repeats")


def test_an_emulated_board_calibrates_within_the_budget():
    """The rates qemu gave on this VM (fp32 0.28, bfloat16 0.086 GFLOP/s; copies at 0.5 GB/s): the old first
    2048^2 products alone took 61 s and 200 s. Now seconds, and the note says where it cut."""
    clock = FakeClock()
    ops = FakeOps(clock, {"float32": 0.28e9, "bfloat16": 0.086e9}, 0.5e9)
    calibration = calibrate("cpu", ops=ops, clock=clock, identity=IDENTITY)
    assert clock.now <= TOTAL_BUDGET_SEC
    assert (calibration.matmul_size_fp32, calibration.matmul_size_mixed, calibration.copy_bytes) == (
        256,
        128,
        64 * 2**20,
    )
    assert calibration.peak_flops_mixed_measured == pytest.approx(0.086e9, rel=1e-12)  # still exact
    assert calibration.note == (
        "within the 12 s calibration budget: float32 matmul 256^2 (not 2048^2); bfloat16 matmul 128^2 "
        "(not 2048^2); copy 64 MiB (not 256 MiB), 2 of 5 repeats"
    )


class CacheCliffOps(FakeOps):
    """Matrices above 256^2 fall out of a cache: 100x slower per FLOP than the sizes before predict."""

    def matmul(self, n: int, dtype: str) -> Callable[[], None]:
        run = super().matmul(n, dtype)
        if n <= 256:
            return run

        def slow() -> None:
            start = self.clock.now
            run()
            self.clock.now += 99 * (self.clock.now - start)

        return slow


def test_a_size_that_overran_is_given_up_for_the_one_before_and_not_tried_again():
    clock = FakeClock()
    ops = CacheCliffOps(clock, {"float32": 1e10, "bfloat16": 1e10}, 10e9)
    calibration = calibrate("cpu", ops=ops, clock=clock, identity=IDENTITY)
    assert calibration.matmul_size_fp32 == 256  # 512^2 took 8 s: given up for 256^2, measured there
    assert calibration.peak_flops_fp32_measured == pytest.approx(1e10, rel=1e-12)
    assert [n for dtype, n in ops.prepared if dtype == "bfloat16"] == [64, 128, 256]  # never the 512^2 cliff
    assert clock.now <= TOTAL_BUDGET_SEC  # the overrun included
    assert "float32 matmul 256^2 (not 2048^2); bfloat16 matmul 256^2 (not 2048^2)" in calibration.note


def test_a_mixed_dtype_the_device_cannot_multiply_is_a_note_not_a_failure():
    calibration, _ = fake_calibration({"float32": 1e11})
    assert calibration.peak_flops_mixed_measured is None
    assert calibration.note.startswith("bfloat16 matmul failed: \"addmm_impl_cpu_\" not implemented for 'bfloat16';")
    assert "not measured" in "\n".join(calibration.summary_lines())


def test_the_copy_fits_a_small_device():
    small = dict(IDENTITY, memory_ceiling_bytes=1 * GIB)
    calibration, _ = fake_calibration({"float32": 1e11, "bfloat16": 1e11}, bandwidth=4e9, identity=small)
    assert calibration.copy_bytes == 64 * 2**20
    assert calibration.mem_bw_measured == pytest.approx(4e9, rel=1e-12)


@pytest.mark.parametrize(
    "identity, profile, fp32_peak",
    [
        ({"device_name": "NVIDIA A40", "gpu_name": "NVIDIA A40"}, "NVIDIA A40", 37.4e12),
        (
            {"device_name": "NVIDIA Jetson Xavier NX Developer Kit (JetPack 5.1)", "board": ""},
            "Jetson Xavier NX",
            0.84e12,
        ),
        ({"device_name": "Raspberry Pi 4 Model B Rev 1.4"}, "Raspberry Pi 4", None),
        ({"device_name": "Intel(R) Xeon(R) CPU"}, "", None),
    ],
)
def test_vendor_peaks_come_from_the_device_profile_named_in_the_device(identity, profile, fp32_peak):
    calibration, _ = fake_calibration({"float32": 1e11, "bfloat16": 1e11}, identity=dict(IDENTITY, **identity))
    assert calibration.vendor_profile == profile
    assert calibration.peak_flops_fp32_vendor == (pytest.approx(fp32_peak) if fp32_peak else None)
    assert calibration.record_fields()["peak_flops_fp32_vendor"] == calibration.peak_flops_fp32_vendor


def test_the_longest_profile_name_wins():
    profiles = [
        DeviceProfile(name, "edge CPU", 8, True, None, None, False, "")
        for name in ("Raspberry Pi", "Raspberry Pi 4", "Pi")
    ]
    found = matching_profile({"device_name": "Raspberry Pi 4 Model B Rev 1.4"}, profiles)
    assert found is not None and found.name == "Raspberry Pi 4"
    assert matching_profile({"device_name": "", "board": "", "gpu_name": ""}, profiles) is None


# -- the cache ---------------------------------------------------------------------------------------------------
def cached_run(folder: Path, rate: float = 1e11, **options: Any) -> tuple[Calibration, FakeOps]:
    clock = FakeClock()
    ops = FakeOps(clock, {"float32": rate, "bfloat16": rate}, 10e9)
    calibration = load_or_calibrate("cpu", folder=folder, ops=ops, clock=clock, identity=dict(IDENTITY), **options)
    return calibration, ops


def test_the_cache_round_trip(tmp_path):
    first, ops = cached_run(tmp_path)
    path = cache_path(IDENTITY["device_fingerprint"], torch.get_num_threads(), tmp_path)
    assert path.name == f"calibration-0123abcd-{torch.get_num_threads()}threads.json" and ops.prepared
    assert Calibration.from_json(path.read_text()) == first
    again, ops = cached_run(tmp_path, rate=5e11)
    assert again == first and ops.prepared == []  # read back, nothing measured
    refreshed, ops = cached_run(tmp_path, rate=5e11, refresh=True)
    assert refreshed.peak_flops_fp32_measured == pytest.approx(5e11) and ops.prepared
    assert Calibration.from_json(path.read_text()) == refreshed


def test_each_thread_count_keeps_its_own_cache_entry(tmp_path):
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, ops = cached_run(tmp_path, rate=1e11)
        torch.set_num_threads(2)
        two, ops_two = cached_run(tmp_path, rate=2e11)
        torch.set_num_threads(1)
        again, ops_again = cached_run(tmp_path, rate=3e11)
    finally:
        torch.set_num_threads(previous)
    assert ops.prepared and ops_two.prepared and ops_again.prepared == []  # the 1-thread entry survived the 2's
    assert (one.threads, two.threads) == (1, 2) and again == one
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "calibration-0123abcd-1threads.json",
        "calibration-0123abcd-2threads.json",
    ]


@pytest.mark.parametrize(
    "spoil",
    [
        lambda text: "{not json",
        lambda text: text[: len(text) // 2],  # cut short
        lambda text: "[1, 2]",
        lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "mem_bw_measured"}),
        lambda text: json.dumps(dict(json.loads(text), peak_flops_fp32_measured="fast")),
        lambda text: json.dumps(dict(json.loads(text), peak_flops_fp32_measured=-1.0)),
        lambda text: "\udcff",
    ],
)
def test_a_corrupt_cache_file_is_measured_again(tmp_path, spoil):
    cached_run(tmp_path)
    path = cache_path(IDENTITY["device_fingerprint"], torch.get_num_threads(), tmp_path)
    path.write_bytes(spoil(path.read_text()).encode("utf-8", "surrogateescape"))
    calibration, ops = cached_run(tmp_path, rate=3e11)
    assert ops.prepared and calibration.peak_flops_fp32_measured == pytest.approx(3e11)
    assert Calibration.from_json(path.read_text()) == calibration  # and the file is good again


@pytest.mark.parametrize(
    "field, value", [("threads", 999), ("torch_version", "0.0.1"), ("mixed_dtype", "float16"), ("cache_version", 0)]
)
def test_a_calibration_made_under_other_conditions_is_measured_again(tmp_path, field, value):
    cached_run(tmp_path)
    path = cache_path(IDENTITY["device_fingerprint"], torch.get_num_threads(), tmp_path)
    path.write_text(json.dumps(dict(json.loads(path.read_text()), **{field: value})))
    _, ops = cached_run(tmp_path)
    assert ops.prepared


def test_a_cache_that_cannot_be_written_does_not_fail_the_caller(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    calibration, _ = cached_run(blocked)
    assert calibration.peak_flops_fp32_measured == pytest.approx(1e11)
    assert "not cached" in calibration.note


def test_the_cache_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_folder() == tmp_path / "w2vprof"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_folder() == tmp_path / "home" / ".cache" / "w2vprof"


def test_real_operations_on_this_cpu():
    """The real torch operations, small: positive rates (nothing about their size, which is the machine's)."""
    small = dict(IDENTITY, memory_ceiling_bytes=16 * 2**20)
    calibration = calibrate("cpu", "bfloat16", repeats=2, matmul_size=64, identity=small)
    assert calibration.peak_flops_fp32_measured > 0 and calibration.mem_bw_measured > 0
    assert calibration.copy_bytes == 2**20 and calibration.matmul_size_fp32 == 64
    assert calibration.peak_flops_mixed_measured is None or calibration.peak_flops_mixed_measured > 0
    assert Calibration.from_json(calibration.to_json()) == calibration


@pytest.mark.parametrize("load, busy", [((6.2, 2), True), ((2.0, 2), True), ((1.5, 2), False), (None, False)])
def test_a_calibration_started_on_a_busy_machine_says_so(load, busy):
    """Other work takes cores from the products: the ceilings come out low and every share of them high (a step
    at 120 % of the peak). The load is read before measuring (the calibration's own products raise it)."""
    calibration, _ = fake_calibration({"float32": 100e9, "bfloat16": 50e9}, load=lambda: load)
    if busy:
        assert f"measured while the machine was busy (load average {load[0]:.1f} on 2 CPUs)" in calibration.note
        assert calibration.note.endswith("`w2vprof devices --calibrate --refresh` on a quiet machine")
    else:
        assert "busy" not in calibration.note
    assert calibration.peak_flops_fp32_measured > 0  # measured and kept all the same


def test_injected_operations_read_no_load_unless_given():
    """Tests with fake operations never depend on how busy the machine running them is."""
    calibration, _ = fake_calibration({"float32": 100e9, "bfloat16": 50e9})
    assert "busy" not in calibration.note


def test_devices_calibrate_prints_the_note_with_the_ceilings(tmp_path):
    """A size cut to the budget or a busy machine is said where the ceilings are shown, not only in the cache."""
    from w2vprof.report.machine_views import calibration_view

    calibration, _ = fake_calibration({"float32": 100e9, "bfloat16": 50e9}, load=lambda: (5.0, 2))
    lines = calibration_view(calibration, tmp_path / "calib.json").notes
    assert lines[-2] == f"note: {calibration.note}" and "busy" in lines[-2]
    assert lines[-1] == f"cached in {tmp_path / 'calib.json'}"
