"""`w2vprof devices`: what this machine is, and which telemetry sources work here (and why others do not)."""
from __future__ import annotations

import typer

__all__ = ["register"]


def devices_command(
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
) -> None:
    """Detected device, memory ceiling and telemetry sources (energy, power, temperature, clocks)."""
    from rich.console import Console
    from rich.table import Table

    from w2vprof.devices import available_sources, identify
    from w2vprof.measure.engine import _read_cpuinfo, cpu_has_native_bf16, resolve_device

    resolved = resolve_device(device)
    identity = identify(resolved)
    console = Console()
    table = Table(title="This device")
    table.add_column("field")
    table.add_column("value")
    table.add_row("device", f"{identity['device_name']} (torch device: {resolved})")
    table.add_row("CPU", f"{identity['cpu_model']}, {identity['cpu_cores']} cores"
                  + (", native bfloat16" if cpu_has_native_bf16(_read_cpuinfo()) else ", no native bfloat16"))
    table.add_row("memory", f"{identity['total_mem_bytes'] / 2**30:.1f} GiB")
    if identity["gpu_name"]:
        table.add_row("GPU", identity["gpu_name"])
    table.add_row("memory ceiling", f"{identity['memory_ceiling_bytes'] / 2**30:.1f} GiB ({identity['memory_ceiling_source']})")
    table.add_row("fingerprint", identity["device_fingerprint"])
    console.print(table)
    sources = Table(title="Telemetry sources")
    sources.add_column("source")
    sources.add_column("available")
    sources.add_column("details / why not")
    for name, ok, why in available_sources(resolved):
        sources.add_row(name, "yes" if ok else "no", why)
    console.print(sources)


def register(app: typer.Typer) -> None:
    app.command("devices")(devices_command)
