"""`w2vprof devices`: what this machine is, which telemetry sources work here and why the others do not."""

from __future__ import annotations

from typing import Any, Optional

import typer

__all__ = ["register", "gather"]


def gather(device: str, root: str = "/") -> dict[str, Any]:
    """Everything the command shows, as data: identity, sources, and what a profile would record."""
    from w2vprof.devices import available_sources, identify
    from w2vprof.devices.cpu import read_native_bf16
    from w2vprof.devices.telemetry import TelemetrySampler

    identity = identify(device, root=root)
    identity["bf16_native"] = read_native_bf16(root)
    sources = [{"source": s, "available": ok, "details": why} for s, ok, why in available_sources(device, root=root)]
    recorded = TelemetrySampler(torch_device=device, root=root).describe()
    return {
        "torch_device": device,
        "identity": identity,
        "sources": sources,
        "recorded": {measure: {"source": source, "details": why} for measure, (source, why) in recorded.items()},
    }


def devices_command(
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps: the device a profile would use."),
    fmt: str = typer.Option("table", "--format", "-f", help="table or json."),
    root: str = typer.Option("/", "--root", hidden=True, help="Read a fake filesystem tree (for tests)."),
    calibrate: bool = typer.Option(
        False, "--calibrate", help="Measure peak matmul FLOP/s (fp32, mixed) and memory bandwidth; cached."
    ),
    refresh: bool = typer.Option(False, "--refresh", help="With --calibrate: measure again, replacing the cache."),
    threads: Optional[str] = typer.Option(None, "--threads", help="With --calibrate: torch threads to measure with."),
) -> None:
    """Detected device, memory ceiling and telemetry sources (energy, temperature, clocks, throttling)."""
    from w2vprof.cli.options import check_format
    from w2vprof.devices.resolve import resolve_device
    from w2vprof.report.machine_views import DEVICES_FORMATS, devices_view
    from w2vprof.report.views import emit

    check_format(fmt, DEVICES_FORMATS)
    if calibrate or refresh or threads is not None:
        calibrate_command(resolve_device(device), fmt, calibrate, refresh, threads)
    else:
        emit(devices_view(gather(resolve_device(device), root=root)), fmt)


def calibrate_command(device: str, fmt: str, calibrate: bool, refresh: bool, threads: Optional[str]) -> None:
    """`devices --calibrate`: this machine's ceilings, from the cache or measured now (w2vprof.devices.calibrate)."""
    from w2vprof.cli.options import parse_positive_int
    from w2vprof.devices.calibrate import cache_path, load_or_calibrate
    from w2vprof.errors import BadInput
    from w2vprof.report.machine_views import calibration_view
    from w2vprof.report.views import emit

    if not calibrate:
        raise BadInput("--refresh and --threads go with --calibrate")
    count = parse_positive_int(threads, "--threads") if threads is not None else None
    import torch

    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)  # the rates, and the cache entry, are per thread count
    try:
        calibration = load_or_calibrate(device, refresh=refresh)
    finally:
        torch.set_num_threads(previous)
    emit(calibration_view(calibration, cache_path(calibration.device_fingerprint, calibration.threads)), fmt)


def register(app: typer.Typer) -> None:
    app.command("devices")(devices_command)
