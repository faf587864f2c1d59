"""The driver supervisor: restart-loop guard, parking and its release.

Every test drives the supervisor with a fake monotonic clock and plain
observations, cycle by cycle, as the daemon's loop does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_core.config.settings import load_settings
from edge_core.drivers.supervisor import Supervisor
from edge_core.drivers.verdict import (
    Cleared,
    Desired,
    FlapInfo,
    Observation,
    Park,
    WentDown,
    observations,
)
from edge_core.model.spec import LABEL_SPEC_HASH, LABEL_TWIN
from edge_core.runtime.container import ContainerView

NAME = "cyberwave-driver-7f3c2a10"
TWIN = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
WALL_OFFSET = 1_800_000_000.0


class FakeClock:
    """A monotonic clock that moves only when told to, and a wall clock
    that follows it unless someone sets the system time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall_offset = WALL_OFFSET

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set_wall(self, seconds: float) -> None:
        """The system time set ``seconds`` forward (or back, when negative)."""
        self.wall_offset += seconds

    def wall(self) -> float:
        return self.wall_offset + self.now


def make(clock: FakeClock, **options: float) -> Supervisor:
    return Supervisor(clock=clock, wall=clock.wall, **options)  # type: ignore[arg-type]


def want(spec_hash: str = "h1") -> dict[str, Desired]:
    return {NAME: Desired(TWIN, spec_hash)}


def seen(
    state: str = "running",
    *,
    restarts: int = 0,
    cid: str = "c1",
    exit_code: int | None = None,
    spec_hash: str = "h1",
    name: str = NAME,
) -> Observation:
    return Observation(
        name=name,
        twin_uuid=TWIN,
        container_id=cid,
        spec_hash=spec_hash,
        state=state,
        restart_count=restarts,
        exit_code=exit_code,
    )


def park_once(sup: Supervisor, clock: FakeClock) -> Park:
    """Drive ``NAME`` into a restart loop from a fresh baseline."""
    sup.observe(want(), [seen(restarts=0, cid="loop")])
    clock.advance(5)
    verdict = sup.observe(want(), [seen("restarting", restarts=5, cid="loop")])
    assert len(verdict.park) == 1
    return verdict.park[0]


# -- the restart-loop rule -------------------------------------------------


@pytest.mark.parametrize("exit_code", [0, 1, 2, 137])
def test_crash_loop_is_parked_whatever_the_exit_code(exit_code: int) -> None:
    """More than four restarts within the window park the driver, for any
    exit code, including clean exits."""
    clock = FakeClock()
    sup = make(clock)
    sup.observe(want(), [seen(restarts=0)])

    clock.advance(10)
    verdict = sup.observe(want(), [seen("restarting", restarts=5, exit_code=exit_code)])

    assert verdict.park == (
        Park(NAME, TWIN, restarts=5, window=60.0, cooloff=600.0, loop=1),
    )
    assert "5 times in 60 s" in verdict.park[0].description


def test_exactly_the_threshold_is_not_a_loop() -> None:
    """Four restarts in the window are allowed; the fifth parks."""
    clock = FakeClock()
    sup = make(clock)
    sup.observe(want(), [seen(restarts=0)])

    clock.advance(10)
    assert sup.observe(want(), [seen(restarts=4)]).quiet

    clock.advance(10)
    assert len(sup.observe(want(), [seen(restarts=5)]).park) == 1


def test_threshold_and_window_are_configurable() -> None:
    """A threshold of 1 parks on the second restart within a 5 s window."""
    clock = FakeClock()
    sup = make(clock, threshold=1, window=5.0)
    sup.observe(want(), [seen(restarts=0)])
    clock.advance(1)
    sup.observe(want(), [seen(restarts=1)])
    clock.advance(5)
    assert sup.observe(want(), [seen(restarts=2)]).quiet
    clock.advance(1)
    assert len(sup.observe(want(), [seen(restarts=3)]).park) == 1


def test_restarts_older_than_the_window_fall_out() -> None:
    """The window slides: restarts a minute old no longer count."""
    clock = FakeClock()
    sup = make(clock)
    sup.observe(want(), [seen(restarts=0)])
    clock.advance(10)  # t=10: two restarts
    sup.observe(want(), [seen(restarts=2)])
    clock.advance(30)  # t=40: two more
    sup.observe(want(), [seen(restarts=4)])

    clock.advance(35)  # t=75: the first two left the window; three remain
    assert sup.observe(want(), [seen(restarts=5)]).quiet

    clock.advance(5)  # t=80: 2 + 1 + 2 = 5 within the last minute
    verdict = sup.observe(want(), [seen(restarts=7)])
    assert [p.restarts for p in verdict.park] == [5]


def test_recreated_container_keeps_the_count_of_its_name() -> None:
    """A new container id under the same name adds to the name's count."""
    clock = FakeClock()
    sup = make(clock)
    sup.observe(want(), [seen(restarts=0, cid="first")])
    clock.advance(5)
    assert sup.observe(want(), [seen(restarts=3, cid="first")]).quiet

    clock.advance(5)
    verdict = sup.observe(want(), [seen(restarts=2, cid="second")])

    assert [p.restarts for p in verdict.park] == [5]


def test_own_relaunches_count_as_restarts() -> None:
    """Every relaunch by the edge core counts, together with Docker's own."""
    clock = FakeClock()
    sup = make(clock)
    sup.observe(want(), [seen(restarts=0, cid="c0")])
    for number in range(1, 4):
        clock.advance(2)
        sup.launched(NAME, "h1", ok=True)
        assert sup.observe(want(), [seen(cid=f"c{number}")]).quiet

    clock.advance(2)
    verdict = sup.observe(want(), [seen(restarts=2, cid="c3")])
    assert [p.restarts for p in verdict.park] == [5]


def test_first_launch_is_not_a_restart() -> None:
    """Starting a driver for the first time does not count toward the rule."""
    clock = FakeClock()
    sup = make(clock, threshold=0)
    sup.observe(want(), [])
    sup.launched(NAME, "h1", ok=True)
    clock.advance(1)

    assert sup.observe(want(), [seen()]).quiet


def test_adopted_container_restart_history_is_not_counted() -> None:
    """Restarts a container collected before we first saw it are history."""
    clock = FakeClock()
    sup = make(clock)

    assert sup.observe(want(), [seen(restarts=40)]).quiet
    clock.advance(10)
    assert sup.observe(want(), [seen(restarts=41)]).quiet


def test_launch_with_a_new_spec_starts_the_count_afresh() -> None:
    """A recreate for a changed spec is a new driver, not a restart."""
    clock = FakeClock()
    sup = make(clock)
    sup.observe(want(), [seen(restarts=0)])
    clock.advance(5)
    sup.observe(want(), [seen(restarts=4)])

    sup.stopped_by_us(NAME)
    sup.launched(NAME, "h2", ok=True)
    clock.advance(5)
    verdict = sup.observe(want("h2"), [seen(restarts=1, cid="c2", spec_hash="h2")])

    assert verdict.quiet


# -- parking ---------------------------------------------------------------


def test_parked_driver_is_held_with_its_retry_time() -> None:
    """A parked driver is held for its cool-off with a reason a person can
    read: restarts, window, until when and how long."""
    clock = FakeClock()
    sup = make(clock)
    park_once(sup, clock)

    reason = sup.hold()[NAME]

    assert reason.startswith("restart loop: 5 restarts in 60 s; parked until ")
    assert reason.endswith("UTC, retry in 10 min")


def test_revival_never_starts_a_parked_driver_early() -> None:
    """Down, removed or failed, a parked driver stays held until its
    cool-off ends, however short the revival timers are."""
    clock = FakeClock()
    sup = make(clock, revival_debounce=0.0, removed_revival=1.0)
    park_once(sup, clock)
    sup.observe(want(), [seen("exited", restarts=5, cid="loop", exit_code=1)])
    clock.advance(300)
    sup.observe(want(), [])
    clock.advance(299)

    assert NAME in sup.hold()
    assert sup.observe(want(), []).quiet

    clock.advance(1)
    assert sup.hold() == {}


@pytest.mark.parametrize("jump", [-86_400.0, 86_400.0], ids=["day-back", "day-ahead"])
def test_a_wall_clock_jump_moves_no_timer(jump: float) -> None:
    """The system time set a day back or ahead (NTP after a power cut) in
    the middle of a cool-off, a revival debounce and a restart window
    changes none of them: only monotonic time counts."""
    clock = FakeClock()
    sup = make(clock, revival_debounce=60.0)
    park_once(sup, clock)
    clock.set_wall(jump)

    clock.advance(599)
    assert NAME in sup.hold()
    clock.advance(1)
    assert sup.hold() == {}

    # Released and retried (the retry counts as a restart), then three
    # restarts, a jump back, and a fourth within the same monotonic
    # minute: five in the window, so it parks again.
    sup.launched(NAME, "h1", True)
    sup.observe(want(), [seen(restarts=0, cid="retry")])
    clock.advance(10)
    assert sup.observe(want(), [seen(restarts=3, cid="retry")]).quiet
    clock.set_wall(-jump)
    clock.advance(10)
    assert len(sup.observe(want(), [seen(restarts=4, cid="retry")]).park) == 1


def test_parking_suppresses_health_events_of_the_stop() -> None:
    """The stop that parking causes is not reported as the driver going down."""
    clock = FakeClock()
    sup = make(clock)
    park_once(sup, clock)
    clock.advance(5)

    verdict = sup.observe(want(), [seen("exited", restarts=5, cid="loop")])

    assert verdict.went_down == ()


def test_cooloff_doubles_with_each_loop_up_to_the_cap() -> None:
    """Each loop after a retry doubles the cool-off, capped at the maximum."""
    clock = FakeClock()
    sup = make(clock, cooloff=600.0, cooloff_max=3600.0)
    cooloffs: list[float] = []
    loops: list[int] = []
    sup.observe(want(), [seen(restarts=0, cid="c0")])
    for number in range(1, 6):
        clock.advance(1)
        verdict = sup.observe(want(), [seen(restarts=5, cid=f"c{number - 1}")])
        cooloffs += [p.cooloff for p in verdict.park]
        loops += [p.loop for p in verdict.park]
        # The cool-off ends and the driver gets its one more start.
        clock.advance(cooloffs[-1])
        sup.launched(NAME, "h1", ok=True)
        sup.observe(want(), [seen(restarts=0, cid=f"c{number}")])

    assert cooloffs == [600.0, 1200.0, 2400.0, 3600.0, 3600.0]
    assert loops == [1, 2, 3, 4, 5]


def test_no_restart_counted_during_the_cooloff() -> None:
    """Restarts seen while parked (someone started it by hand) do not park
    it a second time."""
    clock = FakeClock()
    sup = make(clock)
    park_once(sup, clock)
    clock.advance(10)

    assert sup.observe(want(), [seen(restarts=20, cid="loop")]).park == ()


def test_spec_change_clears_parking() -> None:
    """A new spec for a parked driver ends the parking at once."""
    clock = FakeClock()
    sup = make(clock)
    park_once(sup, clock)
    clock.advance(5)

    verdict = sup.observe(want("h2"), [seen("exited", restarts=5, cid="loop")])

    assert verdict.cleared == (Cleared(NAME, TWIN, "its spec changed"),)
    assert sup.hold() == {}
    assert sup.flapping() == {}


def test_stable_run_after_the_retry_clears_parking() -> None:
    """Running for ``clear_after`` seconds after the retry, with no restart,
    ends the parking; a restart meanwhile starts that time again."""
    clock = FakeClock()
    sup = make(clock, clear_after=600.0)
    park_once(sup, clock)
    clock.advance(600)
    sup.launched(NAME, "h1", ok=True)
    sup.observe(want(), [seen(cid="retry")])

    clock.advance(400)
    assert sup.observe(want(), [seen(restarts=1, cid="retry")]).cleared == ()
    clock.advance(599)
    assert sup.observe(want(), [seen(restarts=1, cid="retry")]).cleared == ()

    clock.advance(1)
    verdict = sup.observe(want(), [seen(restarts=1, cid="retry")])
    assert [c.name for c in verdict.cleared] == [NAME]
    assert "without a restart" in verdict.cleared[0].reason
    assert sup.flapping() == {}


def test_loop_after_the_retry_parks_again_with_the_next_loop_number() -> None:
    """A driver that loops again after its retry is parked again, longer."""
    clock = FakeClock()
    sup = make(clock)
    park_once(sup, clock)
    clock.advance(600)
    sup.launched(NAME, "h1", ok=True)
    sup.observe(want(), [seen(cid="retry")])
    clock.advance(20)

    verdict = sup.observe(want(), [seen("restarting", restarts=5, cid="retry")])

    assert [(p.loop, p.cooloff) for p in verdict.park] == [(2, 1200.0)]


def test_reset_clears_parking_and_the_loop_count() -> None:
    """``reset`` (restart_edge_core) releases parked drivers, and their next
    loop counts as the first."""
    clock = FakeClock()
    sup = make(clock)
    park_once(sup, clock)

    assert sup.reset() == (Cleared(NAME, TWIN, "the edge core was restarted"),)
    assert sup.hold() == {}
    assert sup.reset([NAME]) == ()

    sup.launched(NAME, "h1", ok=True)
    sup.observe(want(), [seen(cid="after")])
    clock.advance(5)
    verdict = sup.observe(want(), [seen(restarts=5, cid="after")])
    assert [(p.loop, p.cooloff) for p in verdict.park] == [(1, 600.0)]


def test_flapping_lists_parked_drivers_for_status() -> None:
    """``flapping`` gives the wall-clock end of the cool-off, the loop
    number, the restarts and the spec parked, and says when the retry is
    under way."""
    clock = FakeClock()
    sup = make(clock)
    park_once(sup, clock)
    parked_at = clock.now

    assert sup.flapping() == {
        NAME: FlapInfo(
            TWIN, WALL_OFFSET + parked_at + 600.0, 1, 5, retrying=False, spec_hash="h1"
        )
    }
    clock.advance(600)
    assert sup.flapping()[NAME].retrying is True


def test_forget_drops_a_parked_driver_and_names_it() -> None:
    """Forgetting an unlinked twin's container returns it when an incident
    was open, and it is no longer listed anywhere."""
    clock = FakeClock()
    sup = make(clock)
    park_once(sup, clock)

    assert sup.known() == (NAME,)
    assert sup.forget([NAME, "cyberwave-driver-unknown"]) == ((NAME, TWIN),)
    assert sup.known() == ()
    assert sup.flapping() == {}
    assert sup.hold() == {}


# -- health transitions ----------------------------------------------------


def test_went_down_and_came_back_once_per_transition() -> None:
    """A driver going down is reported once, and once when it runs again."""
    clock = FakeClock()
    sup = make(clock)
    sup.observe(want(), [seen()])

    down = sup.observe(want(), [seen("exited", exit_code=3)])
    again = sup.observe(want(), [seen("exited", exit_code=3)])
    back = sup.observe(want(), [seen()])
    still = sup.observe(want(), [seen()])

    assert down.went_down == (WentDown(NAME, TWIN, "exited", 3),)
    assert down.went_down[0].detail == "exited with code 3"
    assert again.quiet
    assert [c.name for c in back.came_back] == [NAME]
    assert still.quiet


def test_removal_by_someone_else_is_a_health_event() -> None:
    """A running driver that disappears is reported as removed."""
    clock = FakeClock()
    sup = make(clock)
    sup.observe(want(), [seen()])

    verdict = sup.observe(want(), [])

    assert verdict.went_down == (WentDown(NAME, TWIN, "removed", None),)
    assert verdict.went_down[0].detail == "removed"


def test_restarting_or_paused_is_no_transition() -> None:
    """Docker restarting a driver, or a paused one, is not "went down"."""
    clock = FakeClock()
    sup = make(clock)
    sup.observe(want(), [seen()])

    assert sup.observe(want(), [seen("restarting")]).quiet
    assert sup.observe(want(), [seen("paused")]).quiet
    assert sup.observe(want(), [seen()]).quiet


def test_never_running_driver_does_not_go_down() -> None:
    """A container that never ran (a failed start) is no health event."""
    clock = FakeClock()
    sup = make(clock)
    sup.observe(want(), [])
    sup.launched(NAME, "h1", ok=False)

    assert sup.observe(want(), [seen("exited", exit_code=1)]).quiet


def test_a_driver_killed_after_its_launch_probe_goes_down() -> None:
    """The launch probe saw it run: killed before supervision looked at
    it even once, it still goes down (a pass may still be pulling other
    images when that happens)."""
    clock = FakeClock()
    sup = make(clock)
    sup.observe(want(), [])
    sup.launched(NAME, "h1", ok=True)

    verdict = sup.observe(want(), [seen("exited", exit_code=137)])

    assert [(d.name, d.exit_code) for d in verdict.went_down] == [(NAME, 137)]


@pytest.mark.parametrize("gone", ["exited", "removed"])
def test_nothing_reported_for_containers_we_stopped(gone: str) -> None:
    """Stops and removals by the edge core (recreate, restart command) are
    not health events, and a removal by us is not held for revival."""
    clock = FakeClock()
    sup = make(clock)
    sup.observe(want(), [seen()])

    sup.stopped_by_us(NAME)
    current = [] if gone == "removed" else [seen("exited", exit_code=0)]
    verdict = sup.observe(want(), current)

    assert verdict.quiet
    assert sup.hold() == {}


def test_recreate_by_us_is_silent_and_later_crash_is_reported() -> None:
    """After our own stop and relaunch the new container is watched again."""
    clock = FakeClock()
    sup = make(clock)
    sup.observe(want(), [seen()])
    sup.stopped_by_us(NAME)
    sup.launched(NAME, "h2", ok=True)

    assert sup.observe(want("h2"), [seen(cid="c2", spec_hash="h2")]).quiet
    verdict = sup.observe(want("h2"), [seen("dead", cid="c2", spec_hash="h2")])
    assert [d.state for d in verdict.went_down] == ["dead"]


def test_orphans_are_ignored() -> None:
    """Containers no linked twin wants are never parked, held or reported."""
    clock = FakeClock()
    sup = make(clock)
    orphan = "cyberwave-driver-0ddba11"
    sup.observe({}, [seen(name=orphan, restarts=0)])
    clock.advance(5)

    verdict = sup.observe({}, [seen("exited", name=orphan, restarts=50)])

    assert verdict.quiet
    assert sup.hold() == {}
    assert sup.flapping() == {}


# -- revival and launch backoff --------------------------------------------


def test_down_driver_is_revived_at_most_once_per_debounce() -> None:
    """A driver we started that is found down again is held until the
    revival debounce has passed since its last start."""
    clock = FakeClock()
    sup = make(clock, revival_debounce=60.0)
    sup.observe(want(), [seen("exited", exit_code=0)])
    assert sup.hold() == {}  # found down, never started by us: revive now

    sup.launched(NAME, "h1", ok=True)
    clock.advance(10)
    sup.observe(want(), [seen("exited", exit_code=0, cid="c2")])

    assert "next try in 50 s" in sup.hold()[NAME]
    clock.advance(50)
    assert sup.hold() == {}


def test_removed_driver_is_recreated_after_the_revival_delay() -> None:
    """A driver removed by someone else is held until ``removed_revival``
    seconds after it was first seen missing."""
    clock = FakeClock()
    sup = make(clock, removed_revival=300.0)
    sup.observe(want(), [seen()])
    sup.observe(want(), [])

    clock.advance(120)
    sup.observe(want(), [])
    assert sup.hold()[NAME].startswith("removed outside the edge core")
    assert "recreated in 3 min" in sup.hold()[NAME]

    clock.advance(180)
    assert sup.hold() == {}


def test_removed_revival_disabled_holds_indefinitely() -> None:
    """With ``removed_revival <= 0`` a removed driver stays down, and the
    reason names the setting and the way out."""
    clock = FakeClock()
    sup = make(clock, removed_revival=0.0)
    sup.observe(want(), [seen()])
    sup.observe(want(), [])
    clock.advance(100_000)

    reason = sup.hold()[NAME]
    assert "CYBERWAVE_DRIVER_REMOVED_REVIVAL_SECONDS" in reason
    assert "restart the edge core" in reason


def test_first_start_is_never_held() -> None:
    """A driver that never existed is launched at once, even with revival
    after removal disabled."""
    clock = FakeClock()
    sup = make(clock, removed_revival=0.0)
    sup.observe(want(), [])

    assert sup.hold() == {}


def test_failed_launches_back_off_exponentially_up_to_the_cap() -> None:
    """Failed launches are retried after debounce × 2^(n−1), capped, and a
    success resets the backoff."""
    clock = FakeClock()
    sup = make(clock, revival_debounce=10.0, launch_retry_max=35.0)
    sup.observe(want(), [])
    waits: list[float] = []
    for _ in range(4):
        sup.launched(NAME, "h1", ok=False)
        sup.observe(want(), [])
        started = clock.now
        while NAME in sup.hold():
            assert sup.hold()[NAME].startswith("launch failed")
            clock.advance(1)
        waits.append(clock.now - started)

    assert waits == [10.0, 20.0, 35.0, 35.0]

    sup.launched(NAME, "h1", ok=True)
    sup.launched(NAME, "h1", ok=False)
    assert sup.hold()[NAME] == "launch failed once in a row; next try in 10 s"


# -- plumbing --------------------------------------------------------------


def test_observations_come_from_container_views() -> None:
    """The engine's views become plain observations field by field."""
    view = ContainerView.from_inspect(
        {
            "Id": "abc",
            "Name": f"/{NAME}",
            "RestartCount": 3,
            "State": {"Status": "exited", "ExitCode": 137},
            "Config": {"Labels": {LABEL_TWIN: TWIN, LABEL_SPEC_HASH: "h9"}},
        }
    )

    assert observations([view]) == (
        Observation(NAME, TWIN, "abc", "h9", "exited", 3, 137),
    )


def test_supervisor_takes_its_timings_from_settings(tmp_path: Path) -> None:
    """The CYBERWAVE_DRIVER_* settings tune the rule."""
    settings = load_settings(
        {
            "CYBERWAVE_DRIVER_RESTART_LOOP_THRESHOLD": "1",
            "CYBERWAVE_DRIVER_FLAP_COOLOFF_SECONDS": "30",
        },
        envs={},
        config_dir=tmp_path,
    )
    clock = FakeClock()
    sup = Supervisor.from_settings(settings, clock=clock, wall=clock.wall)
    sup.observe(want(), [seen(restarts=0)])

    verdict = sup.observe(want(), [seen(restarts=2)])

    assert [(p.restarts, p.cooloff) for p in verdict.park] == [(2, 30.0)]


# -- parking across a restart of the edge core -----------------------------


def test_restored_parking_holds_the_first_pass() -> None:
    """Parking restored from the previous run holds the driver before the
    first observation, until the saved end of its cool-off."""
    clock = FakeClock()
    sup = make(clock)
    sup.restore(NAME, twin_uuid=TWIN, parked_until_wall=clock.wall() + 120, restarts=6)

    assert "retry in 2 min" in sup.hold()[NAME]
    assert sup.flapping()[NAME] == FlapInfo(TWIN, clock.wall() + 120, 1, 6)
    sup.observe(want(), [seen("exited", restarts=6)])
    clock.advance(119)
    assert NAME in sup.hold()

    clock.advance(1)
    assert sup.hold() == {}


def test_restored_parking_keeps_counting_loops() -> None:
    """A driver parked in its second loop before the edge core restarted is
    parked as its third loop, with the doubled cool-off, when it loops again."""
    clock = FakeClock()
    sup = make(clock)
    sup.restore(NAME, twin_uuid=TWIN, parked_until_wall=clock.wall() + 10, loops=2)
    sup.observe(want(), [seen("exited", restarts=6, cid="old")])
    clock.advance(11)
    assert sup.hold() == {}
    sup.launched(NAME, "h1", True)
    sup.observe(want(), [seen(restarts=0, cid="retry")])

    clock.advance(5)
    verdict = sup.observe(want(), [seen("restarting", restarts=5, cid="retry")])

    assert [(p.loop, p.cooloff) for p in verdict.park] == [(3, 2400.0)]


def test_restored_parking_is_released_by_a_spec_change() -> None:
    """The first spec seen after a restore is the parked one; a later
    change releases it."""
    clock = FakeClock()
    sup = make(clock)
    sup.restore(NAME, twin_uuid=TWIN, parked_until_wall=clock.wall() + 600)

    assert sup.observe(want("h1"), [seen("exited")]).quiet
    verdict = sup.observe(want("h2"), [seen("exited")])

    assert [c.reason for c in verdict.cleared] == ["its spec changed"]


def test_restored_parking_with_its_spec_is_released_by_another_spec() -> None:
    """A parked spec saved by the previous run is compared with the first
    spec seen: a fix made while the edge core was stopped releases it."""
    clock = FakeClock()
    sup = make(clock)
    sup.restore(
        NAME, twin_uuid=TWIN, parked_until_wall=clock.wall() + 600, spec_hash="h1"
    )

    verdict = sup.observe(want("h2"), [seen("exited")])

    assert [c.reason for c in verdict.cleared] == ["its spec changed"]


def test_restored_retry_is_released_once_it_ran_steadily() -> None:
    """Restored after its cool-off ended (the retry was running), a driver
    is not held, stays listed as retrying, and is released after running
    for the clear time."""
    clock = FakeClock()
    sup = make(clock, clear_after=60.0)
    sup.restore(NAME, twin_uuid=TWIN, parked_until_wall=clock.wall() - 5, loops=1)

    assert sup.hold() == {}
    assert sup.flapping()[NAME].retrying
    assert sup.observe(want(), [seen(restarts=0, cid="retry")]).quiet
    clock.advance(60)
    verdict = sup.observe(want(), [seen(restarts=0, cid="retry")])

    assert [c.name for c in verdict.cleared] == [NAME]
    assert sup.flapping() == {}


def test_unlinked_parked_driver_is_no_longer_held_or_listed() -> None:
    """Once its twin is no longer desired, a parked driver drops out of
    ``hold`` and ``flapping`` even before it is forgotten."""
    clock = FakeClock()
    sup = make(clock)
    park_once(sup, clock)

    sup.observe({}, [seen("exited", restarts=5, cid="loop")])

    assert sup.hold() == {}
    assert sup.flapping() == {}


# -- holding on a pass's own look at the containers --------------------------


def test_kill_since_the_last_observation_is_held_by_the_pass() -> None:
    """A driver killed after the last ``observe`` is held when the pass
    finds it exited soon after its start."""
    clock = FakeClock()
    sup = make(clock, revival_debounce=60.0)
    sup.observe(want(), [])
    sup.launched(NAME, "h1", ok=True)
    sup.observe(want(), [seen()])
    clock.advance(1)

    assert sup.hold() == {}
    assert "next try in 59 s" in (sup.hold_reason(NAME, "exited") or "")
    assert sup.hold_reason(NAME, "running") is None


def test_removal_since_the_last_observation_is_held_by_the_pass() -> None:
    """A driver removed after the last ``observe`` waits the full removal
    delay when the pass finds it missing."""
    clock = FakeClock()
    sup = make(clock, removed_revival=300.0)
    sup.observe(want(), [seen()])

    reason = sup.hold_reason(NAME, None)

    assert reason == "removed outside the edge core; recreated in 5 min"


def test_pass_launches_first_starts_and_our_own_removals() -> None:
    """Unknown names, never-seen drivers and containers we removed ourselves
    are not held by the pass."""
    clock = FakeClock()
    sup = make(clock)
    sup.observe(want(), [])
    assert sup.hold_reason(NAME, None) is None
    assert sup.hold_reason("cyberwave-driver-other", None) is None

    sup.launched(NAME, "h1", ok=True)
    sup.observe(want(), [seen()])
    sup.stopped_by_us(NAME)
    assert sup.hold_reason(NAME, None) is None


def test_launch_failure_reason_is_repeated_while_waiting() -> None:
    """The cause of a failed launch stays visible while its retry waits, and
    the missing container is not mistaken for a removal by hand."""
    clock = FakeClock()
    sup = make(clock, revival_debounce=10.0, removed_revival=0.0)
    sup.observe(want(), [seen()])
    sup.launched(NAME, "h1", ok=False, reason="image missing")
    sup.observe(want(), [])

    assert sup.hold()[NAME] == (
        "launch failed once in a row: image missing; next try in 10 s"
    )
    clock.advance(10)
    assert sup.hold() == {}
    assert sup.hold_reason(NAME, None) is None
