"""Which models the worker needs, read from the workers directory.

Two places name models (protocol.md 1.10, 3.9): ``cw.models.load("<id>")``
calls in ``{config}/workers/*.py`` and the ``models:`` list of
``{config}/workers/cyberwave.yml``. Worker files are parsed as Python, so a
comment or a string that merely mentions ``cw.models.load("x")`` does not
count. A file that does not parse falls back to a text scan, and the
problem is reported (7b item 28); a broken YAML file is reported too.
Neither stops the other sources.

The result is the union in first-seen order: ``cyberwave.yml`` first, then
the Python files by name. This module only reads; it never contacts the
network or the cache.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from edge_core.models.errors import ModelRejected
from edge_core.models.layout import check_model_id

MANIFEST_FILE = "cyberwave.yml"

_TEXT_SCAN = re.compile(r"""\bcw\s*\.\s*models\s*\.\s*load\s*\(\s*(['"])([^'"\n]+)\1""")


@dataclass(frozen=True)
class Discovery:
    """The model ids found, and one line per problem met on the way."""

    model_ids: tuple[str, ...]
    problems: tuple[str, ...] = ()


def discover_models(workers_dir: Path) -> Discovery:
    """Every model id named in ``workers_dir``; never raises for bad files."""
    found: list[str] = []
    problems: list[str] = []
    yml_ids, yml_problems = read_models_yaml(workers_dir / MANIFEST_FILE)
    found.extend(yml_ids)
    problems.extend(yml_problems)
    for path in sorted(workers_dir.glob("*.py")):
        if not path.is_file():
            continue
        ids, file_problems = scan_worker_file(path)
        found.extend(ids)
        problems.extend(file_problems)
    valid = _valid_ids(found, problems)
    return Discovery(tuple(dict.fromkeys(valid)), tuple(problems))


def read_models_yaml(path: Path) -> tuple[list[str], list[str]]:
    """The ``models:`` ids of a ``cyberwave.yml``, and its problems."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], []
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"{path} cannot be read ({exc}); its models are ignored"]
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        return [], [f"{path} is not valid YAML ({reason}); its models are ignored"]
    if document is None:
        return [], []
    if not isinstance(document, dict):
        return [], [f"{path} is not a mapping with a 'models:' list; ignored"]
    models = document.get("models")
    if models is None:
        return [], []
    if not isinstance(models, list):
        return [], [f"{path}: 'models' is not a list of model ids; ignored"]
    ids: list[str] = []
    problems: list[str] = []
    for item in models:
        if isinstance(item, str) and item.strip():
            ids.append(item.strip())
        else:
            problems.append(f"{path}: models entry {item!r} is not a model id; skipped")
    return ids, problems


def scan_worker_file(path: Path) -> tuple[list[str], list[str]]:
    """The ``cw.models.load`` ids of one worker file, and its problems."""
    try:
        source = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        return [], [f"{path} cannot be read ({exc}); its models are ignored"]
    try:
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, SyntaxError) else ""
        ids = [match.group(2) for match in _TEXT_SCAN.finditer(source)]
        return ids, [
            f"{path} is not valid Python ({type(exc).__name__}{where}); "
            f"its models were found by a text scan ({len(ids)} id(s))"
        ]
    return model_load_calls(tree), []


def model_load_calls(tree: ast.AST) -> list[str]:
    """The string ids passed to ``cw.models.load`` in ``tree``, in source order.

    The receiver is ``cw`` or any attribute named ``cw`` (``self.cw``); the
    id is the first positional argument or the ``model_id`` keyword, and
    only a literal string counts.
    """
    calls: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not _is_models_load(node.func):
            continue
        model_id = _literal_id(node)
        if model_id is not None:
            calls.append((node.lineno, node.col_offset, model_id))
    return [model_id for _, _, model_id in sorted(calls)]


def _is_models_load(func: ast.expr) -> bool:
    if not isinstance(func, ast.Attribute) or func.attr != "load":
        return False
    models = func.value
    if not isinstance(models, ast.Attribute) or models.attr != "models":
        return False
    owner = models.value
    if isinstance(owner, ast.Name):
        return owner.id == "cw"
    return isinstance(owner, ast.Attribute) and owner.attr == "cw"


def _literal_id(call: ast.Call) -> str | None:
    candidates: list[ast.expr] = call.args[:1]
    candidates += [kw.value for kw in call.keywords if kw.arg == "model_id"]
    for node in candidates:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value.strip() or None
    return None


def _valid_ids(ids: Iterable[str], problems: list[str]) -> list[str]:
    valid = []
    for model_id in ids:
        try:
            valid.append(check_model_id(model_id))
        except ModelRejected as exc:
            problems.append(str(exc))
    return valid
