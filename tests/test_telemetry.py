"""Telemetry in a real profile on this machine: the record holds exactly what this machine's sources give.

Readers, parsers and the sampler are tested on recorded output, fake trees, a fake NVML and a fake clock in
test_telemetry_parsers.py and test_telemetry_sysfs.py; this file checks only the engine's wiring, with one
tiny-model profile, and decides what to expect before training.
"""

from __future__ import annotations

import pytest

from w2vprof.devices.telemetry import TelemetrySampler

pytestmark = pytest.mark.integration


def test_a_profile_records_the_sources_this_machine_offers():
    from w2vprof.measure.engine import ProfileConfig, profile_configuration

    offered = {measure: source for measure, (source, _) in TelemetrySampler("cpu").describe().items()}
    record = profile_configuration(ProfileConfig(model="tiny", batch=1, seconds=0.5, repeats=1)).record
    assert record.status == "ok"
    # A source that is missing here leaves its columns empty (never a guess); one that exists fills them.
    assert record.energy_source == offered["energy"]
    assert (record.energy_j_per_batch is None) == (offered["energy"] == "")
    assert (record.avg_power_w is None) == (offered["energy"] == "")
    assert record.clock_source == offered["clock"]
    assert (record.clock_mhz_before is None) == (offered["clock"] == "")
    assert record.temp_source == offered["temperature"]
    assert (record.throttled is None) == (offered["throttle"] == "")
