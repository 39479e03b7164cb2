"""The one registry of telemetry sources (w2vprof.devices.sources): `w2vprof devices` and the sampler read the same
probes, each source is probed once per machine, and every chain names sources the registry has."""

from __future__ import annotations

import pytest

from fake_nvml import FakeNvml
from fake_trees import jetson_tree, pi5_tree, pi5_vcgencmd, x86_tree
from w2vprof.devices import sensors
from w2vprof.devices.sources import MEASURES, SOURCES, Machine, MachineSources, available_sources, chains
from w2vprof.devices.telemetry import TelemetrySampler

PLATFORMS = ("jetson", "raspberrypi", "apple", "x86", "linux", "other")


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
def test_every_chain_names_sources_of_the_registry(platform, device):
    known = {entry.key for entry in SOURCES}
    measure_chains = chains(platform, device)
    assert set(measure_chains) == set(MEASURES)
    for measure, chain in measure_chains.items():
        assert set(chain.sources) <= known, measure
        assert chain.sources or chain.otherwise, f"{measure} on {platform}/{device}: neither a source nor a reason"


def test_a_source_is_probed_once_per_machine(tmp_path, monkeypatch):
    calls = []
    real = sensors.rapl_domains
    monkeypatch.setattr(sensors, "rapl_domains", lambda root: calls.append(root) or real(root))
    sources = MachineSources(Machine("cpu", root=str(tmp_path)))
    energy = sources.choose("energy")
    listed = {probe.name: probe for probe in sources.listed()}
    assert calls == [str(tmp_path)]
    assert energy.source == "" and energy.reason == listed["rapl"].details  # one probe, one reason, both places


#: A source the sampler records under another name than its row in `w2vprof devices`.
LISTED_AS = {"nvml_sm": "nvml"}


@pytest.mark.parametrize(
    "tree, device, gpu",
    [(x86_tree, "cpu", False), (x86_tree, "cuda", True), (jetson_tree, "cuda", False), (pi5_tree, "cpu", False)],
    ids=["x86-cpu", "x86-cuda", "jetson-cuda", "pi5-cpu"],
)
def test_what_a_profile_records_is_a_listed_available_source(tree, device, gpu, tmp_path):
    root = str(tree(tmp_path))

    def nvml():
        return FakeNvml(energy_mj_values=[1], temperature_values=[60.0], sm_clock_values=[1500]) if gpu else None

    recorded = TelemetrySampler(device, root=root, nvml=nvml(), vcgencmd=pi5_vcgencmd).describe()
    listed = {name: ok for name, ok, _ in available_sources(device, root=root, nvml=nvml(), vcgencmd=pi5_vcgencmd)}
    for measure in ("energy", "temperature", "clock"):
        source = recorded[measure][0]
        assert source, f"{measure}: the tree offers one"
        assert listed[LISTED_AS.get(source, source)] is True, (measure, source)
