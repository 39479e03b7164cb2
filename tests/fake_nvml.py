"""Test fakes for NVIDIA GPUs: a scripted `Nvml` GPU, a fake `pynvml` module and fake torch CUDA properties.

The only copy of these fakes: the library ships none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class FakeNvml:
    """A scripted GPU: each reading pops the next value of its list (the last one repeats); None = unsupported."""

    gpu_name: str = "Fake GPU"
    driver: str = "000.00"
    energy_mj_values: list[Optional[int]] = field(default_factory=lambda: [None])
    power_mw_values: list[Optional[float]] = field(default_factory=lambda: [None])
    temperature_values: list[Optional[float]] = field(default_factory=lambda: [None])
    sm_clock_values: list[Optional[float]] = field(default_factory=lambda: [None])
    throttle_bit_values: list[Optional[int]] = field(default_factory=lambda: [None])

    @staticmethod
    def _next(values: list):
        return values.pop(0) if len(values) > 1 else values[0]

    def name(self) -> str:
        return self.gpu_name

    def driver_version(self) -> str:
        return self.driver

    def energy_mj(self) -> Optional[int]:
        return self._next(self.energy_mj_values)

    def power_mw(self) -> Optional[float]:
        return self._next(self.power_mw_values)

    def temperature_c(self) -> Optional[float]:
        return self._next(self.temperature_values)

    def sm_clock_mhz(self) -> Optional[float]:
        return self._next(self.sm_clock_values)

    def throttle_bits(self) -> Optional[int]:
        return self._next(self.throttle_bit_values)


class FakeNvmlError(Exception):
    pass


@dataclass(frozen=True)
class FakeBoard:
    """One GPU as NVML sees it: NVML numbers boards by PCI bus."""

    name: str
    uuid: str  # as NVML spells it: GPU-...
    pci_bus_id: str  # as NVML spells it: 00000000:3B:00.0


class FakePynvml:
    """The few pynvml calls w2vprof makes, over boards listed in NVML (PCI bus) order; handles are the boards."""

    NVMLError = FakeNvmlError
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1

    def __init__(self, boards: list[FakeBoard], fail_init: bool = False) -> None:
        self.boards = boards
        self.fail_init = fail_init

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise FakeNvmlError("Driver Not Loaded")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.boards)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeBoard:
        if not 0 <= index < len(self.boards):
            raise FakeNvmlError("Invalid Argument")
        return self.boards[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeBoard:
        return self._find(lambda board: board.uuid == uuid)

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str) -> FakeBoard:
        # NVML parses the id as hexadecimal fields, so case and the domain's width do not matter.
        return self._find(lambda board: _bus_key(board.pci_bus_id) == _bus_key(bus_id))

    def nvmlDeviceGetName(self, handle: FakeBoard) -> str:
        return handle.name

    def _find(self, matches) -> FakeBoard:
        for board in self.boards:
            if matches(board):
                return board
        raise FakeNvmlError("Not Found")


def _bus_key(bus_id: str) -> tuple[int, ...]:
    domain, bus, rest = bus_id.split(":")
    device, function = rest.split(".")
    return tuple(int(part, 16) for part in (domain, bus, device, function))


@dataclass(frozen=True)
class FakeCudaProperties:
    """What torch.cuda.get_device_properties(i) gives, for the fields NVML matching reads."""

    name: str
    uuid: Optional[str] = None  # torch prints it without NVML's GPU- prefix
    pci_domain_id: Optional[int] = None
    pci_bus_id: Optional[int] = None
    pci_device_id: Optional[int] = None
