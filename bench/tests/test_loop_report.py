"""The idle-loop report and its pure helpers, from given numbers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pytest

from bench.loop import (
    _arguments,
    describe,
    mqtt_examples,
    mqtt_in_span,
    producer,
    rest_in_span,
    witness,
)
from bench.report import (
    IdleSample,
    MqttWitness,
    idle_block,
    ratio_lines,
    rest_aim_lines,
    rest_allowance,
    witness_line,
)
from bench.stats import parse_connects, per_slot, template
from tests.support.mqtt import Seen

TWIN = "1a2b3c4d-0000-4000-8000-000000000001"
ENV = "9f8e7d6c-0000-4000-8000-000000000002"
ONLY_EDGE = MqttWitness(edge={"edge-core": 2}, bench={"recorder": 1}, others={})


def idle(
    count: int,
    rest: Mapping[str, int],
    *,
    cycles: int = 20,
    cpu: float = 0.04,
    mqtt: Mapping[str, int] | None = None,
) -> IdleSample:
    """A span of ``cycles`` one-second cycles with the given totals."""
    return IdleSample(
        count=count,
        cycles=cycles,
        interval=1.0,
        span=float(cycles),
        settle=3.0,
        rest=rest,
        mqtt=mqtt or {},
        rest_slots=[1] * cycles,
        mqtt_slots=[0] * cycles,
        cpu_seconds=cpu,
        container_events={},
        log_lines={},
        witness=ONLY_EDGE,
    )


LISTING = "GET /api/v1/environments/{environment}/twins"


def test_template_names_known_ids_and_hides_unknown_ones() -> None:
    """Known ids get their name, other UUIDs and long ids a placeholder."""
    names = {TWIN: "twin", ENV: "environment"}
    assert template(f"/api/v1/environments/{ENV}/twins", names) == (
        "/api/v1/environments/{environment}/twins"
    )
    assert template(f"cyberwave/twin/{TWIN}/driverlog", names) == (
        "cyberwave/twin/{twin}/driverlog"
    )
    other = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    assert template(f"/api/v1/edges/{other}") == "/api/v1/edges/{uuid}"
    assert template("/api/v1/mlmodels/12345/weights") == "/api/v1/mlmodels/{id}/weights"
    assert template("/api/v1/edges/discover") == "/api/v1/edges/discover"


def test_per_slot_counts_each_window_and_ignores_the_outside() -> None:
    """Times are binned into interval-wide slots from the span's start."""
    times = [99.9, 100.0, 100.4, 101.2, 103.9, 104.0]
    assert per_slot(times, start=100.0, width=1.0, slots=4) == [2, 1, 0, 1]


def test_parse_connects_reads_client_ids_from_the_broker_log() -> None:
    """Every "New client connected" line gives its client id."""
    text = (
        "1700000000: mosquitto version 2.0.11 running\n"
        "1700000001: New client connected from 127.0.0.1:40000 as "
        "edge-core_live_ab12 (p5, c1, k60).\n"
        "1700000002: New client connected from 127.0.0.1:40002 as "
        "recorder_live_cd34 (p5, c1, k60).\n"
    )
    assert parse_connects(text) == ["edge-core_live_ab12", "recorder_live_cd34"]


def test_producer_is_the_client_id_before_its_mode() -> None:
    """``<producer>_<live|sim>_<hex>`` gives the producer; anything else itself."""
    assert producer("edge-core_live_0123") == "edge-core"
    assert producer("python-sdk_sim_0123") == "python-sdk"
    assert producer("mosquitto_sub") == "mosquitto_sub"


def test_witness_sorts_clients_by_the_session_ids_seen() -> None:
    """Producers named in payloads are the edge core's; unknown ones are others."""
    seen = [
        Seen("t/driverlog", {"session_id": "edge-core_live_aa"}, 1.0),
        Seen("t/worker_health", b"raw", 2.0),
    ]
    connects = [
        "edge-core_live_00",
        "edge-core_live_aa",
        "recorder_live_bb",
        "python-sdk_live_cc",
    ]
    found = witness(connects, seen)
    assert found == MqttWitness(
        edge={"edge-core": 2}, bench={"recorder": 1}, others={"python-sdk": 1}
    )
    assert witness_line(found).endswith("may include the others' messages")
    assert witness_line(ONLY_EDGE).endswith(
        "only the edge core published (the drivers never connected)"
    )
    assert "not verified" in witness_line(MqttWitness({}, {"recorder": 1}, {}))


def test_requests_and_messages_count_only_inside_the_span() -> None:
    """Records before the span or at its end are left out; ids become names."""
    names = {TWIN: "twin", ENV: "environment"}
    records = [
        {"method": "GET", "path": f"/api/v1/twins/{TWIN}", "timestamp": 9.9},
        {"method": "GET", "path": f"/api/v1/environments/{ENV}/twins", "timestamp": 10},
        {"method": "GET", "path": f"/api/v1/environments/{ENV}/twins", "timestamp": 11},
        {"method": "POST", "path": "/api/v1/edges/discover", "timestamp": 20.0},
    ]
    rest, times = rest_in_span(records, names, (10.0, 20.0))
    assert rest == {LISTING: 2}
    assert times == [10.0, 11.0]
    seen = [Seen(f"cyberwave/twin/{TWIN}/driverlog", "x", at) for at in (5, 12, 13)]
    mqtt, _ = mqtt_in_span(seen, names, (10.0, 20.0))
    assert mqtt == {"cyberwave/twin/{twin}/driverlog": 2}


def test_examples_say_what_was_published_most_often() -> None:
    """Per topic, the most frequent type and message, with their counts."""
    topic = f"cyberwave/twin/{TWIN}/driverlog"
    pulled = {"type": "driver_log", "message": "docker pull started"}
    seen = [
        Seen(topic, pulled, 11.0),
        Seen(topic, pulled, 12.0),
        Seen(topic, {"type": "driver_log", "message": "up"}, 13.0),
        Seen(topic, "plain text", 14.0),
        Seen(topic, pulled, 25.0),
    ]
    found = mqtt_examples(seen, {TWIN: "twin"}, (10.0, 20.0), per_topic=3)
    assert found == {
        "cyberwave/twin/{twin}/driverlog": [
            "2x driver_log: 'docker pull started'",
            "1x driver_log: 'up'",
            "1x 'plain text'",
        ]
    }
    assert (
        len(mqtt_examples(seen, {}, (10.0, 20.0))["cyberwave/twin/{uuid}/driverlog"])
        == 2
    )
    assert describe({"type": "edge_health"}) == "edge_health"
    assert describe({"message": "x" * 100}, width=20) == ": '" + "x" * 14 + "..."


def test_examples_follow_their_topic_row() -> None:
    """An MQTT row is followed by its examples, indented under it."""
    sample = replace(
        idle(1, {}, mqtt={"t/{twin}/driverlog": 40}),
        mqtt_examples={"t/{twin}/driverlog": ["40x driver_log: 'again'"]},
    )
    lines = idle_block(sample)
    row = next(i for i, line in enumerate(lines) if "t/{twin}/driverlog" in line)
    assert lines[row].split()[-2:] == ["2.00", "40"]
    assert lines[row + 1] == "        e.g. 40x driver_log: 'again'"


def test_block_shows_each_call_per_cycle_and_in_span() -> None:
    """Rows are per cycle and in span, most frequent first, then the total."""
    sample = idle(30, {LISTING: 20, "POST /api/v1/edges/discover": 1})
    lines = idle_block(sample)
    assert lines[0].startswith("N=30   20.00 cycles = 20.00 s measured / 1 s interval")
    rows = [line.split() for line in lines[2:5]]
    assert rows[0] == ["GET", "/api/v1/environments/{environment}/twins", "1.00", "20"]
    assert rows[1][-2:] == ["0.05", "1"]
    assert lines[4].split()[:3] == ["total", "1.05", "21"]
    assert "[1-1 per 1 s slot]" in lines[4]
    assert any("(none)" in line for line in lines)
    assert any("2.00 ms per cycle = 0.20% of one core" in line for line in lines)


def test_ratios_are_against_the_first_count() -> None:
    """Each figure of a larger N is divided by the first N's figure."""
    lines = ratio_lines(
        [idle(1, {LISTING: 20}, cpu=0.02), idle(30, {LISTING: 600}, cpu=0.08)]
    )
    assert lines[0].split() == ["per", "cycle", "N=1", "N=30"]
    assert lines[1].split() == ["REST", "requests", "1.00", "30.00", "30.00x"]
    assert lines[2].split() == ["MQTT", "messages", "0.00", "0.00", "same", "(0)"]
    assert lines[3].split() == ["CPU", "ms", "1.00", "4.00", "4.00x"]


def test_flat_rest_meets_the_aim_and_per_twin_calls_do_not() -> None:
    """One listing per cycle whatever N is met; one GET per twin is not."""
    base = idle(1, {LISTING: 20, "POST /api/v1/edges/discover": 1})
    flat = idle(30, {LISTING: 20, "POST /api/v1/edges/discover": 2})
    per_twin = idle(30, {"GET /api/v1/twins/{twin}": 600})
    assert rest_aim_lines(base, flat)[0].endswith("= 1.05x, allowed 1.15x: met")
    assert rest_aim_lines(base, per_twin)[0].endswith("allowed 1.15x: NOT met")


def test_allowance_covers_one_lost_tick_and_the_timers() -> None:
    """The allowance is the base x M/(M-1) plus two requests per span."""
    assert rest_allowance(idle(1, {LISTING: 19})) == pytest.approx(1.0 + 0.1)
    empty = idle(1, {})
    assert rest_allowance(empty) == pytest.approx(0.1)
    assert rest_aim_lines(empty, idle(2, {"POST /api/v1/edges/discover": 2}))[
        0
    ].endswith("= 0.10 from 0 per cycle, allowed 0.10 per cycle: met")


def test_quick_sets_small_defaults_that_explicit_options_override() -> None:
    """--quick means N=1,2 and few cycles; a given --cycles still wins."""
    quick = _arguments(["--quick"])
    assert (quick.counts, quick.cycles, quick.settle_cycles) == ([1, 2], 4, 2)
    assert _arguments(["--quick", "--cycles", "6"]).cycles == 6
    full = _arguments([])
    assert (full.counts, full.cycles, full.interval) == ([1, 10, 30], 20, 1.0)
    with pytest.raises(SystemExit):
        _arguments(["--cycles", "1"])
