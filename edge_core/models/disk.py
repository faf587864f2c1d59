"""Finding and tidying the files of one model directory.

Operators copy files into the cache by hand and downloads can be killed at
any byte, so before anything trusts a model directory it is looked at
here: which file is the weight file, whether a flat file has to become a
directory (protocol.md 3.10), and which leftovers of failed downloads can
go. Nothing here deletes a file an operator put there: only the edge
core's own partial downloads and generated sidecars are ever removed.

Hashing and deciding what a file's state means are the manager's job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_core.config.files import fsync_directory
from edge_core.models.layout import NORMALIZE_SUFFIX, is_partial, weight_candidates
from edge_core.models.sidecar import Sidecar, sidecar_path

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Located:
    """The weight file of a model directory, or why there is no single one."""

    path: Path | None
    problem: str | None = None


def locate_weight_file(model_dir: Path, sidecar: Sidecar | None) -> Located:
    """Pick the weight file of ``model_dir``.

    The file the sidecar names wins. A hand-written sidecar naming a file
    that is not there means "no file yet"; a generated one is stale (the
    operator replaced the file) and is ignored. Otherwise the single
    candidate is the weight file; several candidates are a problem.
    """
    candidates = weight_candidates(model_dir)
    if sidecar is not None and sidecar.filename is not None:
        named = model_dir / sidecar.filename
        if named in candidates:
            return Located(named)
        if sidecar.hand_written:
            return Located(None)
    if not candidates:
        return Located(None)
    if len(candidates) == 1:
        return Located(candidates[0])
    names = ", ".join(path.name for path in candidates)
    return Located(
        None,
        f"{model_dir} holds several weight files ({names}); write "
        f'{sidecar_path(model_dir).name} with "filename" naming the one to use, '
        f"or remove the others",
    )


def describes(sidecar: Sidecar | None, path: Path) -> bool:
    """Whether ``sidecar`` is about the file at ``path``.

    A hand-written sidecar is always about the directory's weight file; a
    generated one only about the file it names.
    """
    if sidecar is None:
        return False
    return sidecar.hand_written or sidecar.filename in (None, path.name)


def normalize_flat_file(
    cache_dir: Path, model_id: str, *, make_dir: Callable[[Path], object]
) -> bool:
    """Turn a flat file ``{cache}/<id>`` into ``{cache}/<id>/<id>``.

    The file is first renamed to ``<id>.__cw_normalize__`` so a crash at
    any point leaves it whole under one of the two names; a leftover of an
    earlier crash is finished here. ``make_dir`` creates the directory
    with the cache's mode and owner. Returns True when a file was moved.
    """
    flat = cache_dir / model_id
    parked = cache_dir / f"{model_id}{NORMALIZE_SUFFIX}"
    if _is_regular_file(flat):
        os.replace(flat, parked)
    if not _is_regular_file(parked):
        return False
    if not flat.exists():
        make_dir(flat)
    final = flat / model_id
    if final.exists():
        _log.warning(
            "model %s: %s is left over from an interrupted move but %s exists; "
            "remove one of them",
            model_id,
            parked,
            final,
        )
        return False
    os.replace(parked, final)
    fsync_directory(flat)
    fsync_directory(cache_dir)
    _log.info("model %s: moved the flat file %s into %s", model_id, flat, final)
    return True


def remove_stale_partials(
    model_dir: Path, *, max_age: float, now: float | None = None
) -> list[Path]:
    """Delete partial downloads untouched for ``max_age`` seconds."""
    moment = time.time() if now is None else now
    removed = []
    for path in _partials(model_dir):
        with contextlib.suppress(FileNotFoundError):
            if moment - path.stat().st_mtime >= max_age:
                path.unlink()
                removed.append(path)
    if removed:
        _log.info(
            "removed %d stale partial download file(s) from %s", len(removed), model_dir
        )
    return removed


def remove_partials(model_dir: Path, *, keep: Path | None = None) -> None:
    """Delete every partial download file of ``model_dir`` except ``keep``."""
    for path in _partials(model_dir):
        if path != keep:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def partial_bytes(model_dir: Path) -> int:
    """How many bytes unfinished downloads hold in ``model_dir``."""
    total = 0
    for path in _partials(model_dir):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def clean_staging(
    model_dir: Path, sidecar: Sidecar | None, *, left_by_us: bool = False
) -> bool:
    """Tidy a model directory that holds no weight file.

    A generated sidecar describes a file that is gone, so it is removed;
    a hand-written one is the operator's and stays. The directory itself
    is removed once empty, but only when it held the edge core's leftovers
    (that sidecar, or ``left_by_us``: the caller created it or removed its
    stale partial files): an empty directory may be one an operator just
    made to copy a file into. Returns True when the directory is gone.
    """
    if sidecar is not None and not sidecar.hand_written:
        with contextlib.suppress(FileNotFoundError):
            sidecar_path(model_dir).unlink()
        left_by_us = True
    if not left_by_us:
        return False
    try:
        model_dir.rmdir()
    except OSError:
        return False
    _log.info("removed the empty model directory %s", model_dir)
    return True


def _partials(model_dir: Path) -> list[Path]:
    try:
        return [path for path in model_dir.iterdir() if is_partial(path.name)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except FileNotFoundError:
        return False
