"""Creating the cache's directories and handing what it writes to the owner.

The edge core usually runs as root while the operator works on the cache
from a normal shell, so every directory and file written into the cache
is ``lchown``ed to the config directory's owner (protocol.md 3.1), and
directories get mode 0755 so the worker can read them through its
read-only mount whatever the process umask.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from edge_core.config.paths import Owner
from edge_core.models.layout import DIR_MODE

_log = logging.getLogger(__name__)


class CacheFiles:
    """Directory creation and ownership for one cache."""

    def __init__(self, owner: Owner | None) -> None:
        self._owner = owner

    def make_dir(self, path: Path) -> bool:
        """Create ``path`` (0755, handed to the owner) unless it exists.

        True when this call created it.
        """
        if path.is_dir():
            return False
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(path, DIR_MODE)
        self.hand_over(path)
        return True

    def hand_over(self, path: Path) -> None:
        """Give ``path`` to the config directory's owner (protocol.md 3.1)."""
        if self._owner is None:
            return
        try:
            os.lchown(path, self._owner.uid, self._owner.gid)
        except OSError as exc:
            _log.warning(
                "cannot hand %s to uid %d (%s); fix its owner by hand",
                path,
                self._owner.uid,
                exc,
            )
