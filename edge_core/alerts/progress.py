"""Pull progress as the ``driver_starting`` card shows it (protocol.md 1.8).

The engine reports a pull as a stream of per-layer events ("Pulling fs
layer", "Downloading" with byte counts, "Extracting", "Pull complete",
"Already exists", ...). ``PullProgress`` folds them into the pull-progress
keys of the card: bytes and layers so far, a percentage that stays below
100 until the pull is complete, and the phase (``downloading`` while any
layer still has bytes to fetch, then ``installing`` while layers are
extracted).

It is pure and keeps no clock: feed it events, read ``keys()``. It does
not decide when the card is updated; the book throttles that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_core.alerts.payloads import (
    DOWNLOADING,
    INSTALLING,
    PULL_COMPLETE,
    PULL_STARTED,
    TEXT_LIMIT,
    clip,
)

# Layer statuses of the Engine API pull stream.
_WAITING = frozenset({"pulling fs layer", "waiting"})
_DOWNLOADING = "downloading"
_DOWNLOADED = frozenset({"verifying checksum", "download complete"})
_EXTRACTING = "extracting"
_COMPLETE = frozenset({"pull complete", "already exists"})
_ALREADY_EXISTS = "already exists"
_RETRYING = "retrying in"
# The share of download and install in the pull's percentage (the 40 and
# 30 points of the card's overall bar).
_DOWNLOAD_WEIGHT = 40
_INSTALL_WEIGHT = 30


def human_bytes(size: int) -> str:
    """``745 MB``-style size with decimal units (as Docker prints them)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
        value /= 1000
    return f"{value:.0f} TB"


@dataclass
class _Layer:
    """What is known about one layer of the image."""

    status: str = ""
    total: int | None = None
    downloaded: int = 0
    download_done: bool = False
    extracted: float = 0.0
    reused: bool = False

    @property
    def complete(self) -> bool:
        return self.extracted >= 1.0

    @property
    def active(self) -> bool:
        return not self.complete and self.status in (_DOWNLOADING, _EXTRACTING)

    @property
    def fetched(self) -> float:
        """How much of the layer's download is done, 0.0 to 1.0."""
        if self.download_done:
            return 1.0
        if self.total:
            return min(1.0, self.downloaded / self.total)
        return 0.0


def _classify(status: str) -> str | None:
    """The layer status ``status`` stands for, or None for a message."""
    lowered = status.strip().lower()
    if lowered in _WAITING or lowered.startswith(_RETRYING):
        return "waiting"
    if lowered == _DOWNLOADING:
        return _DOWNLOADING
    if lowered in _DOWNLOADED:
        return "downloaded"
    if lowered == _EXTRACTING:
        return _EXTRACTING
    if lowered == _ALREADY_EXISTS:
        return _ALREADY_EXISTS
    if lowered in _COMPLETE:
        return "complete"
    return None


class PullProgress:
    """Folds the events of one image pull into the card's pull keys."""

    def __init__(self, image: str) -> None:
        self.image = image
        self._layers: dict[str, _Layer] = {}
        self._last_line = ""
        self._last_message: str | None = None
        self._last_error: str | None = None
        self._complete = False

    # -- input ------------------------------------------------------------

    def feed(
        self,
        layer: str | None,
        status: str,
        current: int | None = None,
        total: int | None = None,
    ) -> None:
        """One event of the engine's pull stream (``runtime`` ``PullEvent``)."""
        kind = _classify(status) if layer else None
        self._last_line = clip(_line(layer, status, current, total), TEXT_LIMIT)
        if kind is None:
            # "Pulling from ...", "Digest: ...", "Status: ..." and the like
            # name the tag or the image, not a layer.
            if status:
                self._last_message = clip(status, TEXT_LIMIT)
            return
        assert layer is not None
        self._apply(self._layers.setdefault(layer, _Layer()), kind, current, total)

    def _apply(
        self, entry: _Layer, kind: str, current: int | None, total: int | None
    ) -> None:
        entry.status = kind
        if kind == _DOWNLOADING:
            if total:
                entry.total = total
            if current is not None:
                entry.downloaded = max(entry.downloaded, current)
        elif kind == "downloaded":
            entry.download_done = True
        elif kind == _EXTRACTING:
            entry.download_done = True
            if current is not None and total:
                entry.extracted = max(entry.extracted, min(0.999, current / total))
        elif kind == _ALREADY_EXISTS:
            entry.download_done = entry.reused = True
            entry.extracted = 1.0
        elif kind == "complete":
            entry.download_done = True
            entry.extracted = 1.0

    def error(self, text: str) -> None:
        """Remember why the pull failed (``last_error``)."""
        self._last_error = clip(text, TEXT_LIMIT)

    def complete(self) -> None:
        """The pull finished: 100 % and phase ``pull_complete``."""
        self._complete = True

    # -- output -------------------------------------------------------------

    @property
    def phase(self) -> str:
        """``pull_started``, ``downloading``, ``installing`` or ``pull_complete``."""
        if self._complete:
            return PULL_COMPLETE
        if not self._layers:
            return PULL_STARTED
        layers = self._layers.values()
        if all(layer.download_done for layer in layers):
            return INSTALLING
        return DOWNLOADING

    def keys(self) -> dict[str, Any]:
        """The pull-progress keys of protocol.md 1.8, for the card's metadata."""
        layers = list(self._layers.values())
        partial = any(
            layer.total is None and not layer.download_done for layer in layers
        )
        total = sum(layer.total or 0 for layer in layers)
        downloaded = sum(
            (layer.total or 0) if layer.download_done else layer.downloaded
            for layer in layers
        )
        keys: dict[str, Any] = {
            "image": self.image,
            "phase": self.phase,
            "progress_percent": self._percent(layers, downloaded, total, partial),
            "downloaded_bytes": downloaded,
            "total_bytes": total,
            "downloaded_human": human_bytes(downloaded) if downloaded else None,
            "total_human": human_bytes(total) if total and not partial else None,
            "total_bytes_partial": partial,
            "layers_fetched": round(sum(layer.fetched for layer in layers), 2),
            "layers_total": len(layers),
            "layers_complete": sum(1 for layer in layers if layer.complete),
            "layers_active": sum(1 for layer in layers if layer.active),
            "last_docker_pull_line": self._last_line,
        }
        if self._last_message is not None:
            keys["last_message"] = self._last_message
        if self._last_error is not None:
            keys["last_error"] = self._last_error
        return keys

    def _percent(
        self, layers: list[_Layer], downloaded: int, total: int, partial: bool
    ) -> int:
        """0 to 99 while pulling (download and install weighted), 100 when done."""
        if self._complete:
            return 100
        if not layers:
            return 0
        if total and not partial:
            fetched = downloaded / total
        else:
            fetched = sum(layer.fetched for layer in layers) / len(layers)
        installed = sum(layer.extracted for layer in layers) / len(layers)
        weighted = (_DOWNLOAD_WEIGHT * fetched + _INSTALL_WEIGHT * installed) / (
            _DOWNLOAD_WEIGHT + _INSTALL_WEIGHT
        )
        return max(0, min(99, int(weighted * 100)))


def _line(
    layer: str | None, status: str, current: int | None, total: int | None
) -> str:
    """One event as ``docker pull`` would print it."""
    sizes = ""
    if current is not None and total:
        sizes = f" {human_bytes(current)}/{human_bytes(total)}"
    prefix = f"{layer}: " if layer else ""
    return f"{prefix}{status}{sizes}"
