"""Which kind of computer this is, for picking a driver profile.

Driver metadata may carry platform-specific profiles (protocol.md 3.8), and
Jetson boards need their own image tags (4.3, 4.9). This module answers
"which OS, which CPU, is it a Jetson, which L4T release" once, from the
standard library and ``/etc/nv_tegra_release``; it does not look at Docker
or GPUs and does not choose a profile itself.
"""

from __future__ import annotations

import logging
import platform as _platform
import re
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
JETSON_VARIANT = "jetson"

_ALIASES: dict[str, tuple[str, ...]] = {
    "linux": ("linux",),
    "darwin": ("darwin", "macos", "mac", "osx"),
    "windows": ("windows", "win32"),
}
_L4T_RELEASE = re.compile(r"\bR(\d+)\b")


@dataclass(frozen=True)
class PlatformFacts:
    """The host OS (``platform.system()``), CPU and Jetson facts.

    ``machine`` is lowercase; ``l4t_major`` is the L4T major release read
    from ``/etc/nv_tegra_release`` (None when unknown).
    """

    system: str
    machine: str
    is_jetson: bool
    l4t_major: int | None

    @property
    def os_name(self) -> str:
        """The lowercase OS name (``linux``, ``darwin``)."""
        return self.system.lower()


def detect_platform(
    settings_platform_variant: str | None,
    *,
    nv_tegra_release: Path = NV_TEGRA_RELEASE,
    system: str | None = None,
    machine: str | None = None,
) -> PlatformFacts:
    """Facts about this host.

    It is a Jetson when ``nv_tegra_release`` exists or the platform variant
    setting is ``jetson``. ``system`` and ``machine`` default to the
    ``platform`` module's answers.
    """
    release = _read_release(nv_tegra_release)
    variant = (settings_platform_variant or "").strip().lower()
    return PlatformFacts(
        system=system if system is not None else _platform.system(),
        machine=(machine if machine is not None else _platform.machine()).lower(),
        is_jetson=release is not None or variant == JETSON_VARIANT,
        l4t_major=_l4t_major(release),
    )


def _read_release(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("cannot read %s: %s; treating this host as a Jetson", path, exc)
        return ""


def _l4t_major(release: str | None) -> int | None:
    if not release:
        return None
    match = _L4T_RELEASE.search(release)
    return int(match.group(1)) if match else None


def os_aliases(system: str) -> tuple[str, ...]:
    """The profile names of an OS (``darwin`` also answers to ``macos``...)."""
    name = system.strip().lower()
    return _ALIASES.get(name, (name,) if name else ())


def profile_keys(facts: PlatformFacts) -> list[str]:
    """Platform profile keys, most specific first, without ``default``.

    ``linux-<machine>-jetson`` (Jetson only), then ``<alias>-<machine>`` for
    every alias of the OS, then every bare alias.
    """
    aliases = os_aliases(facts.system)
    keys: list[str] = []
    if facts.is_jetson and facts.machine:
        keys.append(f"linux-{facts.machine}-jetson")
    if facts.machine:
        keys.extend(f"{alias}-{facts.machine}" for alias in aliases)
    keys.extend(aliases)
    return keys
