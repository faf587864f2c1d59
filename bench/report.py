"""The text of the benchmark report, from measured numbers only.

Each function turns results into lines; none measures, sleeps or prints,
so the layout can be checked without Docker. Every figure is shown as a
median with its spread and, where there is a reference from the same run,
as a ratio to it; each aim is stated with "met" or "NOT met".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
