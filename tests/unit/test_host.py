"""Platform facts, profile keys, host metrics and host facts."""

from __future__ import annotations

import platform
import socket
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from edge_core.host import metrics
from edge_core.host.metrics import HostMetricsSampler, host_facts, ipv4_interfaces
from edge_core.host.platform import PlatformFacts, detect_platform, profile_keys

METRIC_KEYS = {
    "host_memory_percent",
    "host_memory_available_mb",
    "cpu_temp_c",
    "host_cpu_percent",
    "host_disk_percent",
    "power_mw",
}


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_jetson_from_release_file(tmp_path: Path) -> None:
    """An nv_tegra_release file makes the host a Jetson and gives the L4T major
    release."""
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R36 (release), REVISION: 3.0, GCID: 1, BOARD: generic\n")

    facts = detect_platform(
        None, nv_tegra_release=release, system="Linux", machine="AARCH64"
    )

    assert facts == PlatformFacts(
        system="Linux", machine="aarch64", is_jetson=True, l4t_major=36
    )


def test_jetson_from_variant_setting(tmp_path: Path) -> None:
    """CYBERWAVE_PLATFORM_VARIANT=jetson forces Jetson handling without a release
    file."""
    facts = detect_platform(" Jetson ", nv_tegra_release=tmp_path / "absent")
    assert facts.is_jetson and facts.l4t_major is None


def test_plain_host_is_not_jetson(tmp_path: Path) -> None:
    """Without the file or the variant the host is not a Jetson, and real OS facts are
    used."""
    facts = detect_platform(None, nv_tegra_release=tmp_path / "absent")

    assert not facts.is_jetson
    assert facts.system == platform.system()
    assert facts.machine == platform.machine().lower()
    assert facts.os_name == platform.system().lower()


def test_profile_keys_for_linux_jetson() -> None:
    """A Jetson tries its jetson key, then the machine key, then plain linux."""
    facts = PlatformFacts("Linux", "aarch64", is_jetson=True, l4t_major=36)
    assert profile_keys(facts) == ["linux-aarch64-jetson", "linux-aarch64", "linux"]


def test_profile_keys_for_plain_linux() -> None:
    """A non-Jetson Linux host has no jetson key."""
    facts = PlatformFacts("Linux", "x86_64", is_jetson=False, l4t_major=None)
    assert profile_keys(facts) == ["linux-x86_64", "linux"]


def test_profile_keys_for_macos_cover_every_alias() -> None:
    """macOS tries every alias with the machine first, then the bare aliases; never
    default."""
    facts = PlatformFacts("Darwin", "arm64", is_jetson=False, l4t_major=None)
    assert profile_keys(facts) == [
        "darwin-arm64",
        "macos-arm64",
        "mac-arm64",
        "osx-arm64",
        "darwin",
        "macos",
        "mac",
        "osx",
    ]


def _wait_for_cpu_ticks() -> None:
    """Block until the kernel's CPU time counters have moved on."""
    start = sum(psutil.cpu_times())
    deadline = time.monotonic() + 10
    while sum(psutil.cpu_times()) == start:
        assert time.monotonic() < deadline, "CPU time counters never moved"
        time.sleep(0.01)


def test_sample_reports_real_host_figures(tmp_path: Path) -> None:
    """A sample has memory, disk and CPU figures within their ranges."""
    clock = FakeClock()
    sampler = HostMetricsSampler(
        30.0, clock, disk_path=tmp_path, power_supply_dir=tmp_path
    )
    _wait_for_cpu_ticks()
    clock.now += 31

    sample = sampler.sample()

    assert set(sample) <= METRIC_KEYS
    assert 0 < sample["host_memory_percent"] <= 100
    assert sample["host_memory_available_mb"] > 0
    assert sample["host_disk_percent"] == round(
        psutil.disk_usage(str(tmp_path)).percent, 1
    )
    assert 0 <= sample["host_cpu_percent"] <= 100
    assert "power_mw" not in sample


def test_temperature_is_left_out_when_unknown(tmp_path: Path) -> None:
    """cpu_temp_c is present exactly when the host exposes a positive temperature."""
    readings: dict[str, Any] = getattr(psutil, "sensors_temperatures", dict)()
    known = any(
        e.current and e.current > 0 for entries in readings.values() for e in entries
    )

    sample = HostMetricsSampler(30.0, FakeClock(), disk_path=tmp_path).sample()

    assert ("cpu_temp_c" in sample) == known


def test_samples_are_cached_for_min_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within min_interval the cached figures are returned without reading the host
    again."""
    calls: list[int] = []
    real = psutil.virtual_memory

    def counting() -> Any:
        calls.append(1)
        return real()

    monkeypatch.setattr(psutil, "virtual_memory", counting)
    clock = FakeClock()
    sampler = HostMetricsSampler(30.0, clock, disk_path=tmp_path)

    first = sampler.sample()
    reads = len(calls)
    clock.now += 29.9
    second = sampler.sample()
    assert len(calls) == reads
    assert second == first

    clock.now += 0.2
    sampler.sample()
    assert len(calls) == 2 * reads


def test_power_from_battery_files(tmp_path: Path) -> None:
    """Battery power_now (µW), or current × voltage, is summed into milliwatts."""
    (tmp_path / "AC").mkdir()
    (tmp_path / "AC" / "type").write_text("Mains\n")
    (tmp_path / "AC" / "power_now").write_text("9999999\n")
    (tmp_path / "BAT0").mkdir()
    (tmp_path / "BAT0" / "type").write_text("Battery\n")
    (tmp_path / "BAT0" / "power_now").write_text("7500000\n")
    (tmp_path / "BAT1").mkdir()
    (tmp_path / "BAT1" / "type").write_text("Battery\n")
    (tmp_path / "BAT1" / "current_now").write_text("500000\n")
    (tmp_path / "BAT1" / "voltage_now").write_text("12000000\n")

    sample = HostMetricsSampler(30.0, FakeClock(), power_supply_dir=tmp_path).sample()

    assert sample["power_mw"] == 13500.0


def test_power_unreadable_is_none(tmp_path: Path) -> None:
    """No batteries, or no power supply directory, gives no power figure."""
    assert metrics.power_milliwatts(tmp_path / "absent") is None
    assert metrics.power_milliwatts(tmp_path) is None


def test_ipv4_interfaces_match_psutil() -> None:
    """Every non-loopback IPv4 address psutil knows is listed with its up state."""
    expected = sorted(
        (name, entry.address)
        for name, entries in psutil.net_if_addrs().items()
        for entry in entries
        if entry.family == socket.AF_INET and not entry.address.startswith("127.")
    )

    found = ipv4_interfaces()

    assert sorted((i.name, i.address) for i in found) == expected
    stats = psutil.net_if_stats()
    assert all(i.is_up == stats[i.name].isup for i in found)


def test_host_facts_describe_this_host() -> None:
    """Host facts carry hostname, System-machine platform, CPU count, memory and
    interfaces."""
    facts = host_facts()

    assert facts["platform"] == f"{platform.system()}-{platform.machine()}"
    assert facts["hostname"] == socket.gethostname().strip()
    assert facts["os_release"] == platform.release()
    assert facts["cpu_count"] >= 1
    assert facts["memory_total_mb"] == round(
        psutil.virtual_memory().total / 1024 / 1024, 1
    )
    assert isinstance(facts["ipv4_interfaces"], list)
