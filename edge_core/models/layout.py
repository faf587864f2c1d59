"""Names and shapes inside the model cache directory (protocol.md 3.10).

The cache is shared with operators (who copy weights in from a shell) and
mounted read-only into the worker, so every rule about which entry is
what lives here: a valid model id, the one weight file of a model
directory, the names of temporary files, the runtime implied by a file
extension, and the modes files get so the worker can read them.

It only looks at names and ``lstat`` results; it never reads a file's
content and never writes.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path

from edge_core.models.errors import ModelRejected

MANIFEST_NAME = "manifest.json"
SIDECAR_NAME = "metadata.json"
STAMPS_NAME = ".verified.json"
LOCKS_DIR = ".locks"
PARTIAL_PREFIX = ".dl_"
PARTIAL_SUFFIX = ".part"
PARTIAL_STATE_SUFFIX = ".state"
NORMALIZE_SUFFIX = ".__cw_normalize__"

# The worker reads the cache through a read-only mount, possibly as another
# user, while the edge core runs with umask 077.
DIR_MODE = 0o755
FILE_MODE = 0o644

RUNTIME_BY_EXTENSION: Mapping[str, str] = {
    ".pt": "ultralytics",
    ".pth": "torch",
    ".onnx": "onnxruntime",
    ".tflite": "tflite",
    ".engine": "tensorrt",
    ".trt": "tensorrt",
    ".xml": "opencv",
}

_RESERVED_NAMES = frozenset({SIDECAR_NAME, MANIFEST_NAME})
_MAX_NAME = 255


def check_model_id(model_id: object) -> str:
    """``model_id`` when it can name one cache directory, else ``ModelRejected``.

    A model id becomes a directory name, so it must be one non-hidden path
    component: no slash, no backslash, no NUL or control character, not
    ``.`` or ``..``, at most 255 characters, and not a name the cache uses
    for its own files (``manifest.json``, ``*.tmp``, ...).
    """
    text = model_id.strip() if isinstance(model_id, str) else ""
    problem = _id_problem(text)
    if problem is None:
        return text
    raise ModelRejected(
        f"model id {model_id!r} {problem}; use the catalog id or external id "
        f"of the model (e.g. 'yolov8n')",
        model_id=str(model_id),
    )


def is_valid_model_id(model_id: object) -> bool:
    """Whether ``model_id`` can name one cache directory (see ``check_model_id``)."""
    return isinstance(model_id, str) and _id_problem(model_id) is None


def is_safe_filename(name: object) -> bool:
    """Whether ``name`` may be a weight file name inside a model directory."""
    if not isinstance(name, str) or _name_problem(name) is not None:
        return False
    return name not in _RESERVED_NAMES and not is_temporary(name)


def _id_problem(text: str) -> str | None:
    problem = _name_problem(text)
    if problem is None and (text in _RESERVED_NAMES or is_temporary(text)):
        return "is reserved for the cache's own files"
    return problem


def _name_problem(text: str) -> str | None:
    if not text:
        return "is empty"
    if len(text) > _MAX_NAME:
        return f"is longer than {_MAX_NAME} characters"
    if "/" in text or "\\" in text:
        return "contains a path separator"
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        return "contains a control character"
    if text.startswith("."):
        return "starts with a dot"
    return None


def is_temporary(name: str) -> bool:
    """Whether ``name`` is hidden or one of the cache's temporary names."""
    return (
        name.startswith(".") or name.endswith(".tmp") or name.endswith(NORMALIZE_SUFFIX)
    )


def is_partial(name: str) -> bool:
    """Whether ``name`` belongs to an unfinished download (``.dl_*``)."""
    return name.startswith(PARTIAL_PREFIX)


def infer_runtime(filename: str) -> str | None:
    """The runtime implied by the extension of ``filename``, if any."""
    return RUNTIME_BY_EXTENSION.get(Path(filename).suffix.lower())


def weight_candidates(model_dir: Path) -> list[Path]:
    """The regular, non-hidden, non-temporary files of ``model_dir``.

    ``metadata.json`` is left out; symbolic links are too, because they do
    not resolve inside the worker's read-only mount; so are names a sidecar
    cannot record (a control character, ``manifest.json``), which would
    make the sidecar written for them unreadable. Sorted by name.
    """
    try:
        entries = list(model_dir.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        if not is_safe_filename(entry.name):
            continue
        try:
            mode = entry.lstat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISREG(mode):
            found.append(entry)
    return sorted(found, key=lambda path: path.name)


def linked_files(model_dir: Path) -> list[Path]:
    """The symbolic links ``weight_candidates`` leaves out of ``model_dir``."""
    try:
        entries = list(model_dir.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    links = [e for e in entries if is_safe_filename(e.name) and e.is_symlink()]
    return sorted(links, key=lambda path: path.name)


def model_dirs(cache_dir: Path) -> list[str]:
    """Model ids that have a directory (or a flat file) in ``cache_dir``."""
    try:
        entries = list(cache_dir.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    ids = []
    for entry in entries:
        if entry.name == MANIFEST_NAME or is_temporary(entry.name):
            continue
        if _name_problem(entry.name) is None:
            ids.append(entry.name)
    return sorted(ids)
