"""Pure helpers of the benchmark: summaries, ratios and the edge core's log.

Repeated timings are summarised as a median with the spread (min to max)
next to it, never as a single number. The edge core's own log lines
(protocol.md 5.4 format, UTC with milliseconds) say when each phase of a
start-up ended, so the time to "all drivers running" can be split into
where it went.

Nothing here touches Docker, a process or a clock.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

MIB = 1024 * 1024

_UUID = re.compile(r"^[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}$", re.IGNORECASE)
_OPAQUE_ID = re.compile(r"^(?:\d+|[0-9a-f]{16,})$", re.IGNORECASE)
_CONNECT = re.compile(r"New client connected from \S+ as (?P<client>\S+)")

_LINE = re.compile(
    r"^(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC "
    r"\[(?P<level>[A-Z]+)\] \[(?P<logger>[^\]]+)\] (?P<message>.*)$"
)


@dataclass(frozen=True)
class Summary:
    """Median and spread of repeated measurements."""

    median: float
    low: float
    high: float
    count: int

    def show(self, unit: str = "s", digits: int = 2) -> str:
        """``1.23 s [1.10-1.40]``, or just the value for a single sample."""
        value = f"{self.median:.{digits}f} {unit}".rstrip()
        if self.count < 2:
            return value
        return f"{value} [{self.low:.{digits}f}-{self.high:.{digits}f}]"


def summarize(values: Sequence[float]) -> Summary:
    """The median, minimum and maximum of ``values`` (at least one)."""
    if not values:
        raise ValueError("summarize needs at least one value")
    return Summary(
        median=statistics.median(values),
        low=min(values),
        high=max(values),
        count=len(values),
    )


def ratio(value: float, reference: float) -> str:
    """``value / reference`` written as ``0.82x``; ``n/a`` for a zero reference."""
    if reference <= 0:
        return "n/a"
    return f"{value / reference:.2f}x"


@dataclass(frozen=True)
class LogLine:
    """One line of the edge core's log, with its time as epoch seconds."""

    at: float
    level: str
    logger: str
    message: str


def parse_log(text: str) -> list[LogLine]:
    """The well-formed log lines of ``text``; anything else is skipped."""
    lines: list[LogLine] = []
    for raw in text.splitlines():
        match = _LINE.match(raw)
        if match is None:
            continue
        stamp = datetime.strptime(match["stamp"], "%Y-%m-%d %H:%M:%S.%f")
        lines.append(
            LogLine(
                at=stamp.replace(tzinfo=timezone.utc).timestamp(),
                level=match["level"],
                logger=match["logger"],
                message=match["message"],
            )
        )
    return lines


@dataclass(frozen=True)
class Phases:
    """Seconds from process start to the end of each start-up phase.

    ``first_line``: the interpreter, imports, config and the MQTT broker
    check are done (the first log line). ``boot``: the MQTT session, the
    Docker connection, the token check and the registration are done (the
    "is up" line). ``first_create``: the environment is downloaded, twin
    files written, the first image inspected or pulled and the plan made
    (the first container created). ``last_pull``: the last image pull
    finished (None when nothing was pulled; pulls overlap launches).
    ``last_start``: every container has been created and started.
    ``pass_done``: every startup probe has answered ("driver pass done").
    """

    first_line: float | None
    boot: float | None
    first_create: float | None
    last_start: float | None
    pass_done: float | None
    last_pull: float | None = None

    def steps(self) -> list[tuple[str, float | None]]:
        """Each phase's own duration, in start-up order.

        Image pulls are not a phase of their own: a driver is launched as
        soon as its image is ready, so pulls overlap the launches. The
        third phase ends when the first image is ready and its container
        created; ``last_pull`` says when the last pull finished.
        """
        marks = [
            ("interpreter, imports, config, broker check", self.first_line),
            ("boot (MQTT session, Docker, token, register)", self.boot),
            ("environment, twin files, first image ready", self.first_create),
            ("create and start containers", self.last_start),
            ("startup probes", self.pass_done),
        ]
        steps: list[tuple[str, float | None]] = []
        previous: float | None = 0.0
        for name, mark in marks:
            if mark is None or previous is None:
                steps.append((name, None))
            else:
                steps.append((name, mark - previous))
            previous = mark
        return steps


def _first(lines: Iterable[LogLine], needle: str) -> float | None:
    for line in lines:
        if needle in line.message:
            return line.at
    return None


def _last(lines: Sequence[LogLine], needle: str) -> float | None:
    for line in reversed(lines):
        if needle in line.message:
            return line.at
    return None


def phases(lines: Sequence[LogLine], started_at: float) -> Phases:
    """The phase marks of one start-up, relative to ``started_at`` (epoch s)."""

    def rel(at: float | None) -> float | None:
        return None if at is None else at - started_at

    return Phases(
        first_line=rel(lines[0].at) if lines else None,
        boot=rel(_first(lines, " is up (fingerprint ")),
        first_create=rel(_first(lines, "created container ")),
        last_start=rel(_last(lines, "started container ")),
        pass_done=rel(_first(lines, "driver pass done")),
        last_pull=rel(_last(lines, "pulled image ")),
    )


def median_phases(samples: Sequence[Phases]) -> list[tuple[str, float | None]]:
    """The median duration of each phase over ``samples``, in start-up order.

    Each median is taken over the runs that logged both ends of the phase.
    """
    values: dict[str, list[float]] = {}
    for sample in samples:
        for name, seconds in sample.steps():
            found = values.setdefault(name, [])
            if seconds is not None:
                found.append(seconds)
    return [
        (name, statistics.median(found) if found else None)
        for name, found in values.items()
    ]


@dataclass(frozen=True)
class ImportCost:
    """One module's cumulative import time, from ``python -X importtime``."""

    module: str
    cumulative_us: int


def parse_importtime(text: str) -> list[ImportCost]:
    """The top-level imports of ``-X importtime`` output, most expensive first.

    Only lines of nesting depth zero are kept (their cumulative time
    already contains everything they imported).
    """
    costs: list[ImportCost] = []
    for raw in text.splitlines():
        if not raw.startswith("import time:"):
            continue
        parts = raw[len("import time:") :].split("|")
        if len(parts) != 3:
            continue
        cumulative, name = parts[1].strip(), parts[2]
        if not cumulative.isdigit() or name.startswith("  "):
            continue
        costs.append(ImportCost(name.strip(), int(cumulative)))
    return sorted(costs, key=lambda c: c.cumulative_us, reverse=True)


def template(path: str, names: Mapping[str, str] | None = None) -> str:
    """``path`` (or an MQTT topic) with every id segment named, not spelled.

    A segment found in ``names`` becomes ``{<its name>}`` (``{twin}``,
    ``{environment}``), any other UUID ``{uuid}`` and any other long hex
    or decimal id ``{id}``, so requests to the same endpoint for
    different objects count as one row of the report.
    """
    known = names or {}
    segments = []
    for segment in path.split("/"):
        if segment in known:
            segments.append(f"{{{known[segment]}}}")
        elif _UUID.match(segment):
            segments.append("{uuid}")
        elif _OPAQUE_ID.match(segment):
            segments.append("{id}")
        else:
            segments.append(segment)
    return "/".join(segments)


def per_slot(
    times: Iterable[float], *, start: float, width: float, slots: int
) -> list[int]:
    """How many of ``times`` fall in each of ``slots`` windows of ``width``
    seconds from ``start``; times outside them are not counted."""
    counts = [0] * slots
    for at in times:
        index = int((at - start) // width)
        if 0 <= index < slots:
            counts[index] += 1
    return counts


def parse_connects(text: str) -> list[str]:
    """The client id of every CONNECT in a Mosquitto log, in order.

    Needs ``connection_messages true`` (``Broker(log_connects=True)``).
    """
    return [match["client"] for match in _CONNECT.finditer(text)]
