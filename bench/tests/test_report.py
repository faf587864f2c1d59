"""The report text: tables, ratios and verdicts from given numbers."""

from __future__ import annotations

from bench.report import (
    BARE_PARALLEL,
    BASELINE,
    PARALLEL,
    SERIAL,
    Results,
    command_lines,
    memory_lines,
    startup_block,
    where_time_goes,
)
from bench.runs import EdgeSample
from bench.stats import MIB, Phases, summarize


def sample(seconds: float, rss_mib: float | None = None) -> EdgeSample:
    """An edge core run that took ``seconds`` with evenly spread phases."""
    step = seconds / 5
    return EdgeSample(
        running=seconds,
        pass_done=seconds,
        phases=Phases(step, 2 * step, 3 * step, 4 * step, 5 * step),
        rss_bytes=None if rss_mib is None else int(rss_mib * MIB),
    )


def results(base: list[float], edge: list[float]) -> Results:
    """Results with a baseline and a p=4 edge core."""
    found = Results()
    for seconds in base:
        found.add(BASELINE, seconds, None)
    for seconds in edge:
        found.add(PARALLEL, seconds, sample(seconds))
    return found


def test_block_shows_each_variant_with_its_ratio_to_the_baseline() -> None:
    """Every variant run gets its median, spread and ratio of medians."""
    found = results([2.0, 4.0, 3.0], [1.5, 1.8, 1.2])
    found.add(BARE_PARALLEL, 2.4, None)
    lines = startup_block(10, found, [BASELINE, BARE_PARALLEL, PARALLEL, SERIAL])
    assert lines[0].startswith("N=10")
    assert [line.split()[-1] for line in lines[1:3]] == ["1.00x", "0.80x"]
    assert "3.00 [2.00-4.00]" in lines[1]
    assert "1.50 [1.20-1.80]" in lines[3]
    assert lines[3].endswith("0.50x   aim 0.75x: met")
    assert len(lines) == 4


def test_variants_not_run_are_left_out() -> None:
    """A variant without measurements gets no line at all."""
    lines = startup_block(1, results([1.0], [1.0]), [BASELINE, PARALLEL, SERIAL])
    assert not any("p=1" in line for line in lines)


def test_aim_is_met_only_within_three_quarters_of_the_baseline() -> None:
    """0.75x of the baseline is met; anything slower is not."""
    met = startup_block(1, results([1.0], [0.75]), [BASELINE, PARALLEL])
    missed = startup_block(1, results([1.0], [0.76]), [BASELINE, PARALLEL])
    assert met[-1].endswith("aim 0.75x: met")
    assert missed[-1].endswith("aim 0.75x: NOT met")


def test_phases_are_listed_in_order_with_pass_done() -> None:
    """The time split lists every phase, then the pass-done time."""
    lines = where_time_goes([sample(1.0), sample(3.0)])
    assert lines[0].startswith("interpreter, imports")
    assert lines[0].endswith("0.40 s")
    assert lines[-1].startswith('= "driver pass done"')
    assert "2.00 s [1.00-3.00]" in lines[-1]


def test_memory_uses_the_idle_sample_against_aim_and_floor() -> None:
    """RSS is shown in MiB with its ratio to 50 MiB and to the floor."""
    found = results([1.0], [1.0, 1.0])
    found.add(PARALLEL, 1.0, sample(1.0, rss_mib=40.0))
    lines = memory_lines({10: found}, floor_bytes=20 * MIB)
    assert lines == [
        "N=10  edge core 40.0 MiB = 0.80x of the 50 MiB aim (met), 2.00x of the floor"
    ]


def test_memory_over_the_aim_is_not_met() -> None:
    """An RSS above 50 MiB is reported as not met."""
    found = results([1.0], [])
    found.add(PARALLEL, 1.0, sample(1.0, rss_mib=51.0))
    assert "(NOT met)" in memory_lines({1: found}, floor_bytes=MIB)[0]


def test_command_lines_relate_the_subject_to_each_reference() -> None:
    """The subject's median is divided by each reference's and checked to 150 ms."""
    lines = command_lines(
        {
            "edge --version": summarize([90.0, 100.0, 110.0]),
            "python -c pass": summarize([40.0, 50.0, 60.0]),
        },
        "edge --version",
    )
    assert lines[1].endswith("edge --version = 2.00x")
    assert lines[-1] == "edge --version = 0.67x of the 150 ms aim: met"


def test_pulls_are_reported_next_to_the_phases() -> None:
    """When images were pulled, the time the last pull finished is shown."""
    pulled = EdgeSample(
        running=2.0,
        pass_done=2.0,
        phases=Phases(0.5, 0.6, 1.0, 1.8, 2.0, last_pull=1.5),
        rss_bytes=None,
    )
    lines = where_time_goes([pulled])
    assert "(last image pull finished at" in lines[-2]
    assert lines[-2].endswith("1.50 s)")
    assert not any("last image pull" in line for line in where_time_goes([sample(1)]))
