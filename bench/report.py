"""The text of the benchmark report, from measured numbers only.

Each function turns results into lines; none measures, sleeps or prints,
so the layout can be checked without Docker. Every figure is shown as a
median with its spread and, where there is a reference from the same run,
as a ratio to it; each aim is stated with "met" or "NOT met".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bench.runs import EdgeSample
from bench.stats import MIB, Summary, median_phases, ratio, summarize

AIM_STARTUP_RATIO = 0.75
AIM_RSS_MIB = 50.0
AIM_VERSION_MS = 150.0


@dataclass(frozen=True)
class Variant:
    """One way of starting the same containers.

    ``bare`` variants run ``bench/bare_launch.py`` (the docker SDK and
    nothing else), the others ``python -m edge_core``; ``parallelism`` is
    how many launches run at once, ``probe_interval`` the edge core's
    startup probe interval.
    """

    key: str
    title: str
    parallelism: int
    bare: bool = False
    probe_interval: float = 0.1


BASELINE = Variant("baseline", "baseline: bare SDK, one at a time", 1, bare=True)
BARE_PARALLEL = Variant("bare-p4", "bare SDK, 4 at a time (engine ceiling)", 4, True)
PARALLEL = Variant("p4", "edge core p=4", 4)
SERIAL = Variant("p1", "edge core p=1", 1)
DEFAULT_PROBE = Variant("p4-probe1", "edge core p=4, probe every 1 s", 4, False, 1.0)


@dataclass
class Results:
    """Every timed start-up for one N: seconds per variant, edge samples."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    samples: dict[str, list[EdgeSample]] = field(default_factory=dict)

    def add(self, variant: Variant, seconds: float, sample: EdgeSample | None) -> None:
        """Record one run of ``variant``."""
        self.seconds.setdefault(variant.key, []).append(seconds)
        if sample is not None:
            self.samples.setdefault(variant.key, []).append(sample)

    def summary(self, key: str) -> Summary | None:
        """The summary of one variant, None when it was not run."""
        values = self.seconds.get(key)
        return summarize(values) if values else None


def startup_block(
    count: int, result: Results, variants: Sequence[Variant]
) -> list[str]:
    """The lines for one N: each variant's time and its ratio to the baseline.

    The p=4 edge core line also says whether the aim is met.
    """
    base = result.summary(BASELINE.key)
    lines = [f"N={count:<4} {'seconds, median [min-max]':<26} ratio to baseline"]
    for variant in variants:
        summary = result.summary(variant.key)
        if summary is None:
            continue
        relation = "" if base is None else ratio(summary.median, base.median)
        line = f"  {variant.title:<40} {summary.show(''):<26} {relation}"
        if variant is PARALLEL and base is not None:
            met = summary.median <= AIM_STARTUP_RATIO * base.median
            line += f"   aim {AIM_STARTUP_RATIO:.2f}x: {'met' if met else 'NOT met'}"
        lines.append(line.rstrip())
    return lines


def where_time_goes(samples: Sequence[EdgeSample]) -> list[str]:
    """Median duration of each start-up phase, from the edge core's log."""
    lines = []
    for name, seconds in median_phases([s.phases for s in samples]):
        shown = "n/a" if seconds is None else f"{seconds:.2f} s"
        lines.append(f"{name:<44} {shown}")
    pulls = [s.phases.last_pull for s in samples if s.phases.last_pull is not None]
    if pulls:
        label = "(last image pull finished at"
        lines.append(f"{label:<44} {summarize(pulls).show()})")
    done = [s.pass_done for s in samples if s.pass_done is not None]
    if done:
        label = '= "driver pass done" logged at'
        lines.append(f"{label:<44} {summarize(done).show()}")
    return lines


def memory_lines(results: Mapping[int, Results], floor_bytes: int) -> list[str]:
    """Idle RSS per N against the aim and the bare-import floor."""
    floor = floor_bytes / MIB
    lines = []
    for count, result in sorted(results.items()):
        values = [
            s.rss_bytes
            for s in result.samples.get(PARALLEL.key, [])
            if s.rss_bytes is not None
        ]
        if not values:
            continue
        rss = values[-1] / MIB
        met = "met" if rss <= AIM_RSS_MIB else "NOT met"
        lines.append(
            f"N={count:<3} edge core {rss:.1f} MiB = {rss / AIM_RSS_MIB:.2f}x of the "
            f"{AIM_RSS_MIB:.0f} MiB aim ({met}), {rss / floor:.2f}x of the floor"
        )
    return lines


def command_lines(timings: Mapping[str, Summary], subject: str) -> list[str]:
    """Each command's time, and the subject's ratio to each of the others."""
    edge = timings[subject]
    lines = []
    for name, summary in timings.items():
        shown = summary.show("ms", digits=0)
        relation = (
            ""
            if name == subject
            else f"{subject} = {ratio(edge.median, summary.median)}"
        )
        lines.append(f"{name:<40} {shown:<19} {relation}".rstrip())
    met = "met" if edge.median <= AIM_VERSION_MS else "NOT met"
    lines.append(
        f"{subject} = {edge.median / AIM_VERSION_MS:.2f}x of the "
        f"{AIM_VERSION_MS:.0f} ms aim: {met}"
    )
    return lines


# -- the idle loop (bench/loop) ---------------------------------------------

# Calls on a timer of their own rather than on the loop's cycle (the
# keepalive every 30 s, the refresh every 20 cycles of protocol.md 1.11):
# each can fall into one measured span once more than into another.
REST_TIMER_SLACK = 2


@dataclass(frozen=True)
class MqttWitness:
    """Who connected to the broker while one edge core ran, by producer.

    The producer is the part of a client id before ``_live_`` or ``_sim_``
    (protocol.md 2.3). ``edge`` holds the producers that appear as
    ``session_id`` in the payloads, i.e. the edge core's own clients.
    """

    edge: Mapping[str, int]
    bench: Mapping[str, int]
    others: Mapping[str, int]


@dataclass(frozen=True)
class IdleSample:
    """What one edge core did over its measured idle span, for N twins.

    ``rest`` and ``mqtt`` count requests (``METHOD /path/{template}``) and
    messages (topic template) in the span; ``*_slots`` count them per
    interval-wide slot of the span; ``mqtt_examples`` gives, per topic,
    the most frequent kinds of message as ``"<count>x <what>"``.
    ``settle`` is the time from spawning the edge core until it was found
    idle.
    """

    count: int
    cycles: int
    interval: float
    span: float
    settle: float
    rest: Mapping[str, int]
    mqtt: Mapping[str, int]
    rest_slots: Sequence[int]
    mqtt_slots: Sequence[int]
    cpu_seconds: float
    container_events: Mapping[str, int]
    log_lines: Mapping[str, int]
    witness: MqttWitness
    mqtt_examples: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @property
    def observed_cycles(self) -> float:
        """Cycles in the span: its wall-clock length over the interval."""
        return self.span / self.interval

    def per_cycle(self, total: float) -> float:
        """``total`` over the span, per cycle."""
        return total / self.observed_cycles

    @property
    def rest_per_cycle(self) -> float:
        """REST requests per cycle."""
        return self.per_cycle(sum(self.rest.values()))

    @property
    def mqtt_per_cycle(self) -> float:
        """MQTT messages per cycle."""
        return self.per_cycle(sum(self.mqtt.values()))

    @property
    def cpu_ms_per_cycle(self) -> float:
        """CPU milliseconds of the edge core process per cycle."""
        return self.per_cycle(self.cpu_seconds * 1000)


def _counted(
    sample: IdleSample,
    counts: Mapping[str, int],
    slots: Sequence[int],
    examples: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    lines = []
    for name, found in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"  {name:<56} {sample.per_cycle(found):>9.2f} {found:>7}")
        lines += [f"      e.g. {example}" for example in (examples or {}).get(name, ())]
    if not counts:
        lines.append(f"  {'(none)':<56} {0.0:>9.2f} {0:>7}")
    total = sum(counts.values())
    spread = (
        f"[{min(slots)}-{max(slots)} per {sample.interval:g} s slot]" if slots else ""
    )
    row = f"  {'total':<56} {sample.per_cycle(total):>9.2f} {total:>7}   {spread}"
    lines.append(row.rstrip())
    return lines


def _tally(counts: Mapping[str, int]) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{name} x{found}" for name, found in sorted(counts.items()))


def witness_line(witness: MqttWitness) -> str:
    """Who could have published, and whether that leaves only the edge core."""
    seen = (
        f"MQTT clients that connected during the run: the edge core's "
        f"{_tally(witness.edge)}; the bench's {_tally(witness.bench)}; "
        f"others {_tally(witness.others)}"
    )
    if not witness.edge:
        return f"{seen}: no payload named the edge core's client, so not verified"
    if witness.others:
        return f"{seen}: the MQTT figures may include the others' messages"
    return f"{seen}: only the edge core published (the drivers never connected)"


def idle_block(sample: IdleSample) -> list[str]:
    """The lines for one N: REST and MQTT by kind, CPU, and what else happened."""
    cycles = sample.observed_cycles
    lines = [
        f"N={sample.count:<4} {cycles:.2f} cycles = {sample.span:.2f} s measured / "
        f"{sample.interval:g} s interval; idle {sample.settle:.1f} s after the start",
        f"  {'REST requests (emulator request log)':<56} {'per cycle':>9} in span",
    ]
    lines += [f"  {line}" for line in _counted(sample, sample.rest, sample.rest_slots)]
    lines.append("  MQTT messages (recorder subscribed to # on the broker)")
    lines += [
        f"  {line}"
        for line in _counted(
            sample, sample.mqtt, sample.mqtt_slots, sample.mqtt_examples
        )
    ]
    share = sample.cpu_seconds / sample.span * 100 if sample.span > 0 else 0.0
    lines += [
        f"  CPU of the edge core process (every thread): "
        f"{sample.cpu_ms_per_cycle:.2f} ms per cycle = {share:.2f}% of one core",
        f"  in the span also: container events {_tally(sample.container_events)}; "
        f"edge core log lines {_tally(sample.log_lines)}",
        f"  {witness_line(sample.witness)}",
    ]
    return lines


def growth(value: float, reference: float) -> str:
    """``value`` against ``reference`` as a ratio; words when the reference is 0."""
    if reference > 0:
        return ratio(value, reference)
    return "same (0)" if value == 0 else "from 0"


def ratio_lines(samples: Sequence[IdleSample]) -> list[str]:
    """Per-cycle REST, MQTT and CPU for each N and its ratio to the first N."""
    base = samples[0]
    width = 18
    head = f"{'per cycle':<20}" + "".join(f"{f'N={s.count}':>{width}}" for s in samples)
    rows = [head]
    figures: tuple[tuple[str, Callable[[IdleSample], float]], ...] = (
        ("REST requests", lambda s: s.rest_per_cycle),
        ("MQTT messages", lambda s: s.mqtt_per_cycle),
        ("CPU ms", lambda s: s.cpu_ms_per_cycle),
    )
    for name, value in figures:
        cells = [f"{value(base):.2f}"] + [
            f"{value(s):.2f} {growth(value(s), value(base))}" for s in samples[1:]
        ]
        rows.append(f"{name:<20}" + "".join(f"{cell:>{width}}" for cell in cells))
    return rows


def rest_allowance(base: IdleSample) -> float:
    """The most REST requests per cycle a larger N may make and meet the aim.

    A span of M intervals holds M or M-1 ticks of a loop whose tick takes
    time, so the per-cycle figure of the same loop can differ by a factor
    M/(M-1); and ``REST_TIMER_SLACK`` timer-driven calls can fall into one
    span and not into another.
    """
    cycles = max(base.cycles, 2)
    return (
        base.rest_per_cycle * cycles / (cycles - 1)
        + REST_TIMER_SLACK / base.observed_cycles
    )


def rest_aim_lines(base: IdleSample, top: IdleSample) -> list[str]:
    """Whether REST per idle cycle stays flat from the smallest N to the largest."""
    allowed = rest_allowance(base)
    met = "met" if top.rest_per_cycle <= allowed + 1e-9 else "NOT met"
    what = f"N={top.count} / N={base.count}"
    if base.rest_per_cycle > 0:
        found = growth(top.rest_per_cycle, base.rest_per_cycle)
        limit = f"{allowed / base.rest_per_cycle:.2f}x"
    else:
        found = f"{top.rest_per_cycle:.2f} from 0 per cycle"
        limit = f"{allowed:.2f} per cycle"
    cycles = max(base.cycles, 2)
    return [
        f"aim: REST requests per idle cycle do not grow with N: {what} = {found}, "
        f"allowed {limit}: {met}",
        f"  (allowed: N={base.count}'s figure x {cycles}/{cycles - 1}, as a span of "
        f"{cycles} intervals holds {cycles - 1} or {cycles} ticks of a loop whose "
        f"tick takes time, plus {REST_TIMER_SLACK} requests per span for calls on "
        f"their own timers, the keepalive and the every-20-cycles refresh, which "
        f"may fall into one span and not another)",
    ]
