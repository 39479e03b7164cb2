"""`w2vprof devices`: what this machine is, which telemetry sources work here and why the others do not."""
from __future__ import annotations

import json
from typing import Any

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
) -> None:
    """Detected device, memory ceiling and telemetry sources (energy, temperature, clocks, throttling)."""
    from w2vprof.cli.output import check_format
    from w2vprof.measure.engine import resolve_device

    check_format(fmt, ("table", "json"))
    info = gather(resolve_device(device), root=root)
    if fmt == "json":
        typer.echo(json.dumps(info, indent=2))
    else:
        _print_tables(info)


def _print_tables(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    identity = info["identity"]
    gib = 2**30
    this = Table(title="This device", show_header=False)
    this.add_column("field", style="bold")
    this.add_column("value")
    this.add_row("device", f"{identity['device_name']} (torch device: {info['torch_device']}, {identity['platform']})")
    if identity["board"]:
        this.add_row("board", identity["board"])
    native = "native bfloat16" if identity["bf16_native"] else "no native bfloat16"
    this.add_row("CPU", f"{identity['cpu_model']}, {identity['cpu_cores']} cores, {native}")
    this.add_row("memory", f"{identity['total_mem_bytes'] / gib:.1f} GiB")
    if identity["gpu_name"]:
        driver = f", driver {identity['gpu_driver']}" if identity["gpu_driver"] else ""
        this.add_row("GPU", identity["gpu_name"] + driver)
    ceiling = identity["memory_ceiling_bytes"]
    this.add_row("memory ceiling", f"{ceiling / gib:.1f} GiB ({identity['memory_ceiling_source']})")
    this.add_row("fingerprint", identity["device_fingerprint"])

    sources = Table(title="Telemetry sources")
    sources.add_column("source")
    sources.add_column("available")
    sources.add_column("details / why not")
    for row in info["sources"]:
        sources.add_row(row["source"], "yes" if row["available"] else "no", row["details"])

    recorded = Table(title=f"What a profile on {info['torch_device']} records here")
    recorded.add_column("measure")
    recorded.add_column("source")
    recorded.add_column("details / why empty")
    for measure, choice in info["recorded"].items():
        recorded.add_row(measure, choice["source"] or "(empty)", choice["details"])

    console = Console()
    for table in (this, sources, recorded):
        console.print(table)


def register(app: typer.Typer) -> None:
    app.command("devices")(devices_command)
