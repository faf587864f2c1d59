"""Reading the configuration again, as ``restart_edge_core`` does (7b 20).

``reread`` loads ``credentials.json`` again, applies its ``envs`` block to
the process environment as it was before the first one was applied, and
reads every setting anew. What a restart may take into the drivers it
starts is taken (``settings.RESTART_APPLIES``); the other changed
variables are named, since the sessions built from them live as long as
the process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edge_core.config.credentials import Credentials, apply_envs, load_credentials
from edge_core.config.settings import Settings, load_settings, settings_for_restart


@dataclass(frozen=True)
class Reread:
    """The configuration read again."""

    credentials: Credentials
    settings: Settings
    later: tuple[str, ...]
    """Variables that changed but apply only when the process starts again."""
    new_warnings: tuple[str, ...]
    """Bad values that were not there before."""


def reread(config_dir: Path, environ: Mapping[str, str], current: Settings) -> Reread:
    """The configuration as a restart applies it; raises ``ConfigError``
    when credentials.json is unusable (then nothing changes).

    ``environ`` is the process environment before any ``envs`` was applied.
    """
    credentials = load_credentials(config_dir)
    merged = dict(environ)
    apply_envs(credentials.envs, merged)
    fresh = load_settings(merged, envs=credentials.envs, config_dir=config_dir)
    settings, later = settings_for_restart(current, fresh)
    new_warnings = tuple(w for w in fresh.warnings if w not in current.warnings)
    return Reread(credentials, settings, later, new_warnings)
