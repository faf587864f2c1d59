"""Host resource numbers for health messages and saturation alerts.

The bootstrap ``edge_health`` message (protocol.md 2.6) carries memory,
CPU, disk and temperature figures sampled at most every 30 s, and
``POST /edges/discover`` carries static host facts (1.4 R5). Every figure
is best effort: one that cannot be read is left out, never guessed, and
never raises. This module does not decide what is saturated.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from edge_core import __version__
from edge_core.config.fingerprint import host_identity

logger = logging.getLogger(__name__)

POWER_SUPPLY_DIR = Path("/sys/class/power_supply")
_MIB = 1024 * 1024
# Temperature sensors that describe the CPU package, best first.
_CPU_SENSORS = (
    "coretemp",
    "k10temp",
    "cpu_thermal",
    "cpu-thermal",
    "soc_thermal",
    "acpitz",
)


@dataclass(frozen=True)
class Ipv4Interface:
    """One IPv4 address of one network interface."""

    name: str
    address: str
    is_up: bool


class HostMetricsSampler:
    """Samples host usage, at most once per ``min_interval`` seconds.

    CPU usage is measured between two calls of this sampler (the first
    baseline is taken at construction), so several samplers never disturb
    each other. Not thread-safe: one owner calls ``sample``.
    """

    def __init__(
        self,
        min_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        disk_path: Path = Path("/"),
        power_supply_dir: Path = POWER_SUPPLY_DIR,
    ) -> None:
        self._min_interval = min_interval
        self._clock = clock
        self._disk_path = disk_path
        self._power_supply_dir = power_supply_dir
        self._cpu_before = _cpu_counters()
        self._cached: dict[str, float] | None = None
        self._sampled_at = 0.0

    def sample(self) -> dict[str, float]:
        """The latest figures; a copy of the cached ones within ``min_interval``."""
        now = self._clock()
        if self._cached is not None and now - self._sampled_at < self._min_interval:
            return dict(self._cached)
        readings: dict[str, float | None] = {
            "host_memory_percent": _memory_percent(),
            "host_memory_available_mb": _memory_available_mb(),
            "cpu_temp_c": _cpu_temperature(),
            "host_cpu_percent": self._cpu_percent(),
            "host_disk_percent": _disk_percent(self._disk_path),
            "power_mw": power_milliwatts(self._power_supply_dir),
        }
        self._cached = {k: v for k, v in readings.items() if v is not None}
        self._sampled_at = now
        return dict(self._cached)

    def _cpu_percent(self) -> float | None:
        after = _cpu_counters()
        before, self._cpu_before = self._cpu_before, after
        if before is None or after is None:
            return None
        busy = after[0] - before[0]
        total = after[1] - before[1]
        if total <= 0:
            return None
        return round(min(100.0, max(0.0, 100.0 * busy / total)), 1)


def _cpu_counters() -> tuple[float, float] | None:
    """(busy, total) CPU seconds since boot, summed over all CPUs."""
    try:
        times = psutil.cpu_times()
    except (OSError, RuntimeError):
        return None
    fields: Mapping[str, float] = times._asdict()
    # Guest time is already counted in user time on Linux.
    total = sum(v for k, v in fields.items() if k not in ("guest", "guest_nice"))
    idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
    return total - idle, total


def _memory_percent() -> float | None:
    try:
        return round(float(psutil.virtual_memory().percent), 1)
    except (OSError, RuntimeError):
        return None


def _memory_available_mb() -> float | None:
    try:
        return round(float(psutil.virtual_memory().available) / _MIB, 1)
    except (OSError, RuntimeError):
        return None


def _disk_percent(path: Path) -> float | None:
    try:
        return round(float(psutil.disk_usage(str(path)).percent), 1)
    except (OSError, RuntimeError):
        return None


def _cpu_temperature() -> float | None:
    reader = getattr(psutil, "sensors_temperatures", None)
    if reader is None:
        return None
    try:
        sensors: Mapping[str, Any] = reader()
    except (OSError, RuntimeError):
        return None
    names = [n for n in _CPU_SENSORS if n in sensors] + sorted(
        n for n in sensors if n not in _CPU_SENSORS
    )
    for name in names:
        for entry in sensors[name]:
            if entry.current is not None and entry.current > 0:
                return round(float(entry.current), 1)
    return None


def power_milliwatts(power_supply_dir: Path = POWER_SUPPLY_DIR) -> float | None:
    """Power drawn from batteries in mW, from ``power_now`` or current × voltage."""
    try:
        supplies = sorted(power_supply_dir.iterdir())
    except OSError:
        return None
    total: float | None = None
    for supply in supplies:
        if _read_text(supply / "type") != "Battery":
            continue
        microwatts = _battery_microwatts(supply)
        if microwatts is not None:
            total = (total or 0.0) + microwatts / 1000.0
    return round(total, 1) if total is not None else None


def _battery_microwatts(supply: Path) -> float | None:
    power = _read_number(supply / "power_now")
    if power is not None:
        return abs(power)
    current = _read_number(supply / "current_now")
    voltage = _read_number(supply / "voltage_now")
    if current is None or voltage is None:
        return None
    # µA × µV is pW; divide to get µW.
    return abs(current * voltage) / 1_000_000.0


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _read_number(path: Path) -> float | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def ipv4_interfaces() -> tuple[Ipv4Interface, ...]:
    """Every non-loopback IPv4 address of this host, sorted by interface name."""
    try:
        addresses = psutil.net_if_addrs()
        stats = psutil.net_if_stats()
    except (OSError, RuntimeError):
        return ()
    found: list[Ipv4Interface] = []
    for name in sorted(addresses):
        for entry in addresses[name]:
            if entry.family != socket.AF_INET or entry.address.startswith("127."):
                continue
            is_up = bool(stats[name].isup) if name in stats else False
            found.append(Ipv4Interface(name, entry.address, is_up))
    return tuple(found)


def _os_pretty_name() -> str | None:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return None
    return release.get("PRETTY_NAME") or release.get("NAME")


def host_facts() -> dict[str, Any]:
    """Static facts about this host for ``POST /api/v1/edges/discover``."""
    hostname, _mac, plat = host_identity()
    facts: dict[str, Any] = {
        "hostname": hostname,
        "platform": plat,
        "system": platform.system(),
        "machine": platform.machine(),
        "os_release": platform.release(),
        "os_version": platform.version(),
        "os_name": _os_pretty_name(),
        "cpu_count": os.cpu_count(),
        "edge_core_version": __version__,
        "ipv4_interfaces": [
            {"name": i.name, "address": i.address, "is_up": i.is_up}
            for i in ipv4_interfaces()
        ],
    }
    try:
        facts["memory_total_mb"] = round(float(psutil.virtual_memory().total) / _MIB, 1)
    except (OSError, RuntimeError):
        logger.debug("cannot read the total memory of this host")
    return facts
