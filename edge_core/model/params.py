"""The ``params`` of a driver profile: raw ``docker run`` arguments.

Driver metadata carries ``params`` as a list of ``docker run`` tokens
(protocol.md 3.8), for example ``["-e", "K=V", "--device", "/dev/ttyACM0"]``.
This module checks them and splits them into three parts, because the
edge core treats them differently (protocol.md 4.4, 4.7, 7b item 24):

* ``env_pairs``: the exact tokens ``-e`` ``KEY=value``, merged with the
  environment the edge injects (one value per key);
* ``env_passthrough``: any other way of writing an env var
  (``--env K=V``, ``--env=K=V``, ``-e=K=V``), passed on as written;
* ``options``: every other flag, normalized by ``options.fold``.

It does not decide which env value wins; ``envlayer`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edge_core.errors import DriverSpecError
from edge_core.model.options import FLAGS, RunOptions, canonical_flag, fold

ENV_FLAG = "--env"
SHORT_ENV = "-e"
# Flags the edge core sets itself and that params must not change.
RESERVED_FLAGS = frozenset({"--name"})
_TRUE_WORDS = frozenset({"true", "1", "yes"})
_FALSE_WORDS = frozenset({"false", "0", "no"})


@dataclass(frozen=True)
class DriverParams:
    """Driver ``params`` after checking, split by how each part is used."""

    options: RunOptions = field(default_factory=dict)
    env_pairs: Mapping[str, str] = field(default_factory=dict)
    env_passthrough: Mapping[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """Every env var the params set; an exact ``-e`` pair wins a tie,
        as it comes after the passed-through ones on the command line."""
        return {**self.env_passthrough, **self.env_pairs}

    def has(self, flag: str) -> bool:
        """Whether the params set ``flag`` (long form, e.g. ``--network``)."""
        if flag == ENV_FLAG:
            return bool(self.env_pairs or self.env_passthrough)
        return flag in self.options


def params_source(twin_uuid: str, profile_key: str, service: str | None = None) -> str:
    """How error messages name where a list of params came from."""
    where = f"twin {twin_uuid} driver profile {profile_key!r}"
    if service is not None:
        where += f" service {service!r}"
    return f"{where} params"


def _tokens(params: object, source: str) -> list[str]:
    if params is None:
        return []
    if not isinstance(params, list):
        raise DriverSpecError(
            f"{source}: must be a list of strings, got {type(params).__name__}; "
            f'write them as ["--device", "/dev/ttyACM0", "-e", "KEY=value"]'
        )
    for index, token in enumerate(params):
        if not isinstance(token, str):
            raise DriverSpecError(
                f"{source}: element {index} ({token!r}) is not a string; "
                f"quote every element of params"
            )
    return list(params)


def _assignment(value: str | None, *, index: int, source: str) -> tuple[str, str]:
    """``KEY=value`` split into key and value, or a clear error."""
    key, sep, val = (value or "").partition("=")
    if value is None or not sep or not key.strip() or " " in key:
        raise DriverSpecError(
            f"{source}: element {index} ({value!r}) after '-e' is not KEY=value; "
            f"write each '-e' as its own element followed by 'KEY=value'"
        )
    return key, val


def _switch(name: str, inline: str, *, index: int, source: str) -> bool:
    """The value of ``--flag=true|false`` for a flag that takes none."""
    word = inline.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise DriverSpecError(
        f"{source}: element {index} ({name}={inline!r}) is not true or false; "
        f"write {name!r} alone to turn it on"
    )


def parse_driver_params(params: object, *, source: str) -> DriverParams:
    """Check and split a driver's ``params``; ``source`` names them in errors.

    Raises ``DriverSpecError`` for anything Docker would misread: an
    element that is not a string, a value that is not a flag, an unknown
    flag, a flag without its value, or ``-e`` not followed by KEY=value.
    """
    tokens = _tokens(params, source)
    pairs: list[tuple[str, str | bool]] = []
    env_pairs: dict[str, str] = {}
    passthrough: dict[str, str] = {}

    index = 0
    while index < len(tokens):
        token = tokens[index]
        at = index
        index += 1

        if token == SHORT_ENV:
            value = tokens[index] if index < len(tokens) else None
            key, val = _assignment(value, index=index, source=source)
            env_pairs[key] = val
            index += 1
            continue

        if not token.startswith("-"):
            raise DriverSpecError(
                f"{source}: element {at} ({token!r}) is not a docker run flag; "
                f"every value must follow its flag, as in "
                f"'--device' '/dev/ttyACM0'"
            )
        raw_name, has_inline, inline = token.partition("=")
        name = canonical_flag(raw_name)
        flag = FLAGS.get(name)
        if flag is None:
            raise DriverSpecError(
                f"{source}: element {at} ({raw_name!r}) is not a supported "
                f"docker run flag; remove it from the driver params"
            )
        if name in RESERVED_FLAGS:
            raise DriverSpecError(
                f"{source}: element {at} ({raw_name!r}) is set by the edge core; "
                f"remove it from the driver params"
            )

        if not flag.takes_value:
            if not has_inline or _switch(name, inline, index=at, source=source):
                pairs.append((name, True))
            continue

        if has_inline:
            value = inline
        elif index < len(tokens):
            value = tokens[index]
            index += 1
        else:
            raise DriverSpecError(
                f"{source}: element {at} ({raw_name!r}) has no value; write "
                f"its value as the next element"
            )

        if name == ENV_FLAG:
            key, val = _assignment(value, index=at, source=source)
            passthrough[key] = val
            continue
        pairs.append((name, value))

    return DriverParams(
        options=fold(pairs, source=source),
        env_pairs=env_pairs,
        env_passthrough=passthrough,
    )
