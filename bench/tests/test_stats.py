"""The pure parts of the benchmark: summaries, ratios, logs and import traces."""

from __future__ import annotations

import pytest

from bench.stats import (
    Phases,
    median_phases,
    parse_importtime,
    parse_log,
    phases,
    ratio,
    summarize,
)

LOG = """\
2026-12-03 18:03:09.801 UTC [INFO] [edge_core.daemon] MQTT broker is reachable
2026-12-03 18:03:09.844 UTC [INFO] [edge_core.daemon] edge core 0 is up (fingerprint fp)
a driver line without a timestamp
2026-12-03 18:03:09.905 UTC [INFO] [edge_core.runtime.docker] created container a from i
2026-12-03 18:03:10.000 UTC [INFO] [edge_core.runtime.docker] created container b from i
2026-12-03 18:03:10.046 UTC [INFO] [edge_core.runtime.docker] started container a
2026-12-03 18:03:10.100 UTC [INFO] [edge_core.runtime.docker] started container b
2026-12-03 18:03:10.157 UTC [INFO] [edge_core.daemon] driver pass done: 2 of 2 running
"""
# 2026-12-03 18:03:09.000 UTC as epoch seconds.
START = 1796320989.0


def test_summary_is_median_with_spread() -> None:
    """A summary holds the median, the minimum and the maximum."""
    summary = summarize([3.0, 1.0, 2.0, 10.0])
    assert (summary.median, summary.low, summary.high, summary.count) == (
        2.5,
        1.0,
        10.0,
        4,
    )
    assert summary.show() == "2.50 s [1.00-10.00]"


def test_single_sample_shows_no_spread() -> None:
    """One measurement is shown without a min-max range."""
    assert summarize([0.123]).show("ms", digits=3) == "0.123 ms"


def test_summary_of_nothing_is_refused() -> None:
    """Summarising no values is an error, not a zero."""
    with pytest.raises(ValueError):
        summarize([])


def test_ratio_is_value_over_reference() -> None:
    """A ratio reads value / reference with two decimals, n/a for zero."""
    assert ratio(3.0, 4.0) == "0.75x"
    assert ratio(1.0, 0.0) == "n/a"


def test_log_lines_are_parsed_with_utc_times() -> None:
    """Well-formed lines become records with epoch times; others are skipped."""
    lines = parse_log(LOG)
    assert len(lines) == 7
    assert lines[0].at == pytest.approx(START + 0.801)
    assert lines[0].level == "INFO"
    assert lines[0].logger == "edge_core.daemon"
    assert lines[-1].message.startswith("driver pass done")


def test_phase_marks_come_from_the_first_and_last_lines() -> None:
    """Creation counts from the first create, starting until the last start."""
    marks = phases(parse_log(LOG), START)
    assert marks.first_line == pytest.approx(0.801)
    assert marks.boot == pytest.approx(0.844)
    assert marks.first_create == pytest.approx(0.905)
    assert marks.last_start == pytest.approx(1.100)
    assert marks.pass_done == pytest.approx(1.157)
    durations = [seconds for _, seconds in marks.steps()]
    expected = [0.801, 0.043, 0.061, 0.195, 0.057]
    assert durations == pytest.approx(expected, abs=1e-6)


def test_missing_marks_leave_gaps_not_wrong_numbers() -> None:
    """A phase whose end, or whose start, was never logged has no duration."""
    marks = Phases(0.5, None, 0.9, 1.5, None)
    durations = [seconds for _, seconds in marks.steps()]
    assert durations[0] == pytest.approx(0.5)
    assert durations[1:3] == [None, None]
    assert durations[3] == pytest.approx(0.6)
    assert durations[4] is None


def test_median_phases_skip_runs_without_the_mark() -> None:
    """Each phase's median is taken over the runs that logged it."""
    samples = [Phases(1.0, 1.1, 1.2, 2.0, 2.1), Phases(3.0, None, 3.2, 4.0, 4.1)]
    medians = dict(median_phases(samples))
    assert medians["interpreter, imports, config, broker check"] == pytest.approx(2.0)
    assert medians["boot (MQTT session, Docker, token, register)"] == pytest.approx(0.1)
    assert medians["create and start containers"] == pytest.approx(0.8)


def test_importtime_keeps_top_level_imports_by_cost() -> None:
    """Only depth-zero imports are listed, most expensive first."""
    trace = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |   nested.child
import time:       500 |       2600 | big
import time:        50 |         50 | small
"""
    costs = parse_importtime(trace)
    assert [(c.module, c.cumulative_us) for c in costs] == [
        ("big", 2600),
        ("small", 50),
    ]


def test_pulls_overlapping_launches_keep_phases_in_order() -> None:
    """A pull logged after the first create is reported, not made a phase."""
    pulled = LOG.replace(
        "created container b from i", "pulled image i in 0.1 s"
    ).replace("started container a", "created container b from i")
    marks = phases(parse_log(pulled), START)
    assert marks.last_pull == pytest.approx(1.000, abs=1e-6)
    durations = [seconds for _, seconds in marks.steps()]
    assert all(d is not None and d >= 0 for d in durations)
    assert durations[2] == pytest.approx(0.061, abs=1e-6)


def test_without_a_pull_there_is_no_pull_mark() -> None:
    """Local images leave the last-pull mark empty."""
    assert phases(parse_log(LOG), START).last_pull is None
