"""`w2vprof devices`: what this machine is, which telemetry sources work here and why the others do not."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional

import typer

if TYPE_CHECKING:  # pragma: no cover
    from w2vprof.report.render import Table

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
    from w2vprof.cli.output import check_format
    from w2vprof.devices.resolve import resolve_device

    check_format(fmt, ("table", "json"))
    if calibrate or refresh or threads is not None:
        calibrate_command(resolve_device(device), fmt, calibrate, refresh, threads)
        return
    info = gather(resolve_device(device), root=root)
    if fmt == "json":
        typer.echo(json.dumps(info, indent=2))
    else:
        from w2vprof.report.render import tables_terminal

        typer.echo(tables_terminal(device_tables(info)), nl=False)


def calibrate_command(device: str, fmt: str, calibrate: bool, refresh: bool, threads: Optional[str]) -> None:
    """`devices --calibrate`: this machine's ceilings, from the cache or measured now (w2vprof.devices.calibrate)."""
    from w2vprof.cli.options import parse_positive_int
    from w2vprof.devices.calibrate import cache_path, load_or_calibrate
    from w2vprof.errors import BadInput

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
    if fmt == "json":
        typer.echo(calibration.to_json(), nl=False)
        return
    for line in calibration.summary_lines():
        typer.echo(line)
    if "not cached" in calibration.note:
        typer.echo(f"note: {calibration.note}")
    else:
        typer.echo(f"cached in {cache_path(calibration.device_fingerprint, calibration.threads)}")


def device_tables(info: dict[str, Any]) -> list[Table]:
    """This device (key-value), its telemetry sources, and what a profile would record with which source."""
    from w2vprof.report.render import Table

    sources = Table(
        title="Telemetry sources",
        columns=["source", "available", "details / why not"],
        align="lll",
        rows=[[row["source"], "yes" if row["available"] else "no", row["details"]] for row in info["sources"]],
    )
    recorded = Table(
        title=f"What a profile on {info['torch_device']} records here",
        align="lll",
        columns=["measure", "source", "details / why empty"],
        rows=[
            [measure, choice["source"] or "(empty)", choice["details"]] for measure, choice in info["recorded"].items()
        ],
    )
    return [identity_table(info), sources, recorded]


def identity_table(info: dict[str, Any]) -> Table:
    from w2vprof.report.render import Table

    identity = info["identity"]
    gib = 2**30
    rows = [["device", f"{identity['device_name']} (torch device: {info['torch_device']}, {identity['platform']})"]]
    if identity["board"]:
        rows.append(["board", identity["board"]])
    native = "native bfloat16" if identity["bf16_native"] else "no native bfloat16"
    rows.append(["CPU", f"{identity['cpu_model']}, {identity['cpu_cores']} cores, {native}"])
    rows.append(["memory", f"{identity['total_mem_bytes'] / gib:.1f} GiB"])
    if identity["gpu_name"]:
        driver = f", driver {identity['gpu_driver']}" if identity["gpu_driver"] else ""
        rows.append(["GPU", identity["gpu_name"] + driver])
    ceiling = identity["memory_ceiling_bytes"]
    rows.append(["memory ceiling", f"{ceiling / gib:.1f} GiB ({identity['memory_ceiling_source']})"])
    rows.append(["fingerprint", identity["device_fingerprint"]])
    return Table(title="This device", columns=["field", "value"], rows=rows, align="ll", show_header=False)


def register(app: typer.Typer) -> None:
    app.command("devices")(devices_command)
