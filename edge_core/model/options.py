"""Docker run options in one normalized, hashable form.

Driver metadata carries raw ``docker run`` arguments (``params``). The edge
core adds its own (``--init``, ``--restart``, log options, mounts, env).
Both are folded here into one JSON-able mapping, ``RunOptions``:

* keys are long flag names (``-e`` becomes ``--env``, ``--net`` becomes
  ``--network``);
* ``--env`` and ``--label`` map to ``{key: value}`` (the last one wins);
* flags without a value map to ``True``;
* every other flag maps to a list of its values: sorted for set-like
  flags (protocol.md 4.2), in the given order otherwise.

The same mapping feeds the spec hash (protocol.md 4.2) and, in the Docker
adapter, the Engine API create call. Flags outside ``FLAGS`` are refused
with a clear message instead of being passed on half-understood.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edge_core.errors import DriverSpecError

RunOptions = dict[str, Any]


@dataclass(frozen=True)
class Flag:
    """How one ``docker run`` flag is written and folded."""

    name: str
    takes_value: bool = True
    set_like: bool = False
    single: bool = False


_FLAGS = [
    Flag("--env"),
    Flag("--label"),
    Flag("--env-file", set_like=True),
    Flag("--volume", set_like=True),
    Flag("--mount", set_like=True),
    Flag("--device", set_like=True),
    Flag("--device-cgroup-rule", set_like=True),
    Flag("--add-host", set_like=True),
    Flag("--cap-add", set_like=True),
    Flag("--cap-drop", set_like=True),
    Flag("--dns", set_like=True),
    Flag("--dns-search", set_like=True),
    Flag("--dns-option", set_like=True),
    Flag("--expose", set_like=True),
    Flag("--group-add", set_like=True),
    Flag("--log-opt", set_like=True),
    Flag("--publish", set_like=True),
    Flag("--security-opt", set_like=True),
    Flag("--sysctl", set_like=True),
    Flag("--tmpfs", set_like=True),
    Flag("--ulimit", set_like=True),
    Flag("--network", single=True),
    Flag("--ipc", single=True),
    Flag("--pid", single=True),
    Flag("--user", single=True),
    Flag("--workdir", single=True),
    Flag("--entrypoint", single=True),
    Flag("--hostname", single=True),
    Flag("--restart", single=True),
    Flag("--stop-timeout", single=True),
    Flag("--stop-signal", single=True),
    Flag("--log-driver", single=True),
    Flag("--gpus", single=True),
    Flag("--runtime", single=True),
    Flag("--shm-size", single=True),
    Flag("--memory", single=True),
    Flag("--cpus", single=True),
    Flag("--name", single=True),
    Flag("--privileged", takes_value=False),
    Flag("--init", takes_value=False),
    Flag("--detach", takes_value=False),
    Flag("--tty", takes_value=False),
    Flag("--interactive", takes_value=False),
    Flag("--read-only", takes_value=False),
]

FLAGS: Mapping[str, Flag] = {flag.name: flag for flag in _FLAGS}

ALIASES: Mapping[str, str] = {
    "-e": "--env",
    "-v": "--volume",
    "-l": "--label",
    "-p": "--publish",
    "-u": "--user",
    "-m": "--memory",
    "-d": "--detach",
    "-h": "--hostname",
    "-w": "--workdir",
    "-t": "--tty",
    "-i": "--interactive",
    "--net": "--network",
}


def canonical_flag(token: str) -> str:
    """The long name of a flag token (``-e`` gives ``--env``)."""
    return ALIASES.get(token, token)


def split_tokens(tokens: Iterable[str], *, source: str) -> list[tuple[str, str | bool]]:
    """Pair each flag with its value, in order.

    ``--flag=value`` counts as ``--flag value``. ``source`` names where the
    tokens came from, for the error message.
    """
    pairs: list[tuple[str, str | bool]] = []
    items = list(tokens)
    index = 0
    while index < len(items):
        token = items[index]
        index += 1
        if not isinstance(token, str) or not token.startswith("-"):
            raise DriverSpecError(
                f"{source}: unexpected argument {token!r}; params must be docker "
                f"run flags such as '--device /dev/ttyACM0' or '-e KEY=value'"
            )
        name, has_inline, inline = token.partition("=")
        name = canonical_flag(name)
        flag = FLAGS.get(name)
        if flag is None:
            raise DriverSpecError(
                f"{source}: docker run option {name!r} is not supported; "
                f"remove it from the driver params"
            )
        if not flag.takes_value:
            pairs.append((name, True))
            continue
        if has_inline:
            pairs.append((name, inline))
            continue
        if index >= len(items) or not isinstance(items[index], str):
            raise DriverSpecError(
                f"{source}: option {name!r} has no value; write it as "
                f"'{name}' followed by its value as the next element"
            )
        pairs.append((name, items[index]))
        index += 1
    return pairs


def _key_value(flag: str, value: str, *, source: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not key or (flag == "--env" and not sep):
        raise DriverSpecError(
            f"{source}: {flag} value {value!r} is not KEY=value; write each "
            f"'-e' followed by 'KEY=value' as the next element"
        )
    return key, val


def fold(pairs: Iterable[tuple[str, str | bool]], *, source: str) -> RunOptions:
    """Fold flag/value pairs into normalized ``RunOptions``."""
    options: RunOptions = {}
    for name, value in pairs:
        flag = FLAGS[name]
        if name in ("--env", "--label"):
            key, val = _key_value(name, str(value), source=source)
            options.setdefault(name, {})[key] = val
        elif not flag.takes_value:
            options[name] = True
        elif flag.single:
            options[name] = [value]
        else:
            options.setdefault(name, []).append(value)
    for name, value in options.items():
        if FLAGS[name].set_like:
            options[name] = sorted(value)
    return options


def parse_params(tokens: Iterable[str], *, source: str) -> RunOptions:
    """Normalize raw ``docker run`` params from driver metadata."""
    return fold(split_tokens(tokens, source=source), source=source)


def merge(base: RunOptions, extra: RunOptions) -> RunOptions:
    """Options of ``base`` overlaid with ``extra``.

    Maps merge key by key (``extra`` wins), list flags append (single-value
    flags are replaced), booleans are set.
    """
    merged: RunOptions = {
        k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()
    }
    for name, value in extra.items():
        flag = FLAGS[name]
        if isinstance(value, dict):
            merged.setdefault(name, {}).update(value)
        elif value is True or flag.single:
            merged[name] = value
        else:
            combined = list(merged.get(name, [])) + list(value)
            merged[name] = sorted(combined) if flag.set_like else combined
    return merged
