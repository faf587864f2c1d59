"""What twin sync remembers across a restart and between a push and a pass.

Each test runs the real ``TwinSync`` (and ``DesiredStateKeeper`` where the
driver pass is involved) against the backend emulator: the base copy of a
file kept over a restart of the edge core, a damaged file left alone while
it may still be being written, a file replaced while the edge core was
stopped, a pass that must not write back the values from before a push,
and robot telemetry in metadata that must not cost a pass per cycle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edge_core.config.environment import EnvironmentConfig
from edge_core.model.linkage import linked_twins
from edge_core.twins import desired_state
from edge_core.twins.keeper import DesiredStateKeeper
from edge_core.twins.store import BASE_DIR
from edge_core.twins.sync import TwinSync
from tests.support.twin_site import ARM, ENV, FINGERPRINT, Site


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _restarted(site: Site, **options: Any) -> TwinSync:
    """A new ``TwinSync`` from the baselines saved in desired-state.json."""
    snapshot = desired_state.new_snapshot(ENV, site.listing(), {})
    desired_state.save(site.config, snapshot.with_baselines(site.sync.baselines()))
    saved = desired_state.load(site.config)
    assert saved is not None
    return TwinSync(site.config, site.client, baselines=saved.twin_baselines, **options)


# -- the base copy -----------------------------------------------------------


def test_after_a_restart_a_push_still_carries_only_the_driver_edit(
    site: Site,
) -> None:
    """The UI turns privacy on and the driver adds a calibration while the
    edge core is restarting: the push after the restart carries only the
    calibration onto the backend's metadata, so the UI's change survives."""
    site.ensure(ARM)
    site.cycle()
    assert (site.config / BASE_DIR / f"{ARM}.json").read_bytes() == (
        site.path().read_bytes()
    )
    restarted = _restarted(site)
    local = site.read()["metadata"]
    site.emulator.edit_twin(
        ARM, {"metadata": {**local, "privacy": "on"}, "name": "renamed in the UI"}
    )
    site.edit(metadata={**local, "calibration": {"done": True}})

    assert site.cycle(sync=restarted).pushed == (ARM,)

    [push] = site.puts()
    assert push == {
        "metadata": {**local, "privacy": "on", "calibration": {"done": True}}
    }
    assert site.emulator.twins[ARM]["name"] == "renamed in the UI"


def test_a_base_copy_that_does_not_match_the_baseline_is_not_used(
    site: Site,
) -> None:
    """A base copy from another content (a crash between the two writes)
    is ignored: the whole file is pushed, as without any copy."""
    site.ensure(ARM)
    site.cycle()
    (site.config / BASE_DIR / f"{ARM}.json").write_text('{"name": "other"}')
    restarted = _restarted(site)
    site.edit(description="set on the robot")

    assert site.cycle(sync=restarted).pushed == (ARM,)

    push = site.puts()[-1]
    assert push["description"] == "set on the robot"
    assert push["name"] == site.read()["name"]


def test_removed_files_lose_their_base_copy(site: Site) -> None:
    site.ensure(ARM)
    site.cycle()
    copy = site.config / BASE_DIR / f"{ARM}.json"
    assert copy.exists()

    assert site.sync.remove_files() == [ARM]

    assert not copy.exists()


# -- damage that may still be a write in progress ------------------------------


def test_damage_is_repaired_only_once_it_stayed_for_the_settle_time(
    site: Site,
) -> None:
    """The same damaged bytes seen twice within ``settle`` seconds may be a
    slow writer: they are repaired only once they stayed that long."""
    clock = Clock()
    sync = TwinSync(site.config, site.client, clock=clock, settle=30.0)
    site.ensure(ARM, sync=sync)
    site.cycle(sync=sync)
    good = site.path().read_bytes()
    site.write_raw(good[: len(good) // 2])

    assert site.cycle(sync=sync).repaired == ()
    clock.now += 10
    assert site.cycle(sync=sync).repaired == ()
    clock.now += 20

    assert site.cycle(sync=sync).repaired == (ARM,)
    assert site.path().read_bytes() == good


# -- a file replaced while the edge core was stopped ---------------------------


def test_a_file_replaced_while_stopped_restarts_the_driver_holding_the_old_one(
    site: Site,
) -> None:
    """The driver kept running with the old inode while the file was
    replaced by rename and the edge core was stopped: the first cycle of
    the new process marks the driver for a restart, once."""
    site.ensure(ARM)
    site.cycle()
    mounted = site.path().stat().st_ino
    document = site.read()
    replacement = site.config / "edited.tmp"
    replacement.write_text(json.dumps(document))
    os.replace(replacement, site.path())
    assert site.path().stat().st_ino != mounted
    restarted = _restarted(site, mounted_inode=lambda twin: mounted)

    assert site.cycle(sync=restarted).remount == (ARM,)
    assert site.cycle(sync=restarted).remount == ()


def test_a_file_deleted_while_stopped_is_written_and_remounted(site: Site) -> None:
    site.ensure(ARM)
    site.cycle()
    mounted = site.path().stat().st_ino
    site.path().unlink()
    restarted = _restarted(site, mounted_inode=lambda twin: mounted)

    assert site.ensure(ARM, sync=restarted) == [ARM]

    assert site.cycle(sync=restarted).remount == (ARM,)
    assert site.read()["uuid"] == ARM


def test_the_file_the_driver_mounted_is_left_alone(site: Site) -> None:
    site.ensure(ARM)
    site.cycle()
    mounted = site.path().stat().st_ino
    restarted = _restarted(site, mounted_inode=lambda twin: mounted)

    assert site.cycle(sync=restarted).remount == ()


# -- the pass after a push ---------------------------------------------------


def _keeper(site: Site, tmp_path: Path) -> tuple[DesiredStateKeeper, EnvironmentConfig]:
    keeper = DesiredStateKeeper(
        site.config,
        site.client,
        site.sync,
        saved=None,
        fingerprint=FINGERPRINT,
        interval=10.0,
        wake=lambda: None,
    )
    environment = EnvironmentConfig(
        path=tmp_path / "environment.json", uuid=ENV, twin_uuids=None
    )
    return keeper, environment


def _pass(site: Site, keeper: DesiredStateKeeper) -> list[str]:
    """Write the twin files from the keeper's desired state, as a pass does."""
    snapshot = keeper.snapshot
    assert snapshot is not None
    twins = [t for t in linked_twins(snapshot.twins, FINGERPRINT) if t.uuid == ARM]
    return site.sync.ensure_files(twins, snapshot.assets)


def test_a_pass_after_a_push_does_not_undo_the_pushed_edit(
    site: Site, tmp_path: Path
) -> None:
    """The cycle's listing is taken before its push: the desired state it
    becomes carries the pushed fields, so the pass that follows does not
    write the old position back into the file."""
    keeper, environment = _keeper(site, tmp_path)
    keeper.adopt(keeper.download(environment, refetch=True).snapshot, fresh=True)
    _pass(site, keeper)
    site.cycle()
    site.edit(position_x=2.5, metadata={**site.read()["metadata"], "gain": 3})

    download = keeper.download(environment, refetch=False)
    keeper.adopt(download.snapshot, fresh=False)
    _pass(site, keeper)

    assert site.emulator.twins[ARM]["position_x"] == 2.5
    assert site.read()["position_x"] == 2.5
    assert site.read()["metadata"]["gain"] == 3


def test_robot_telemetry_in_metadata_starts_no_pass(site: Site, tmp_path: Path) -> None:
    """A battery level the robot reports every few seconds changes the
    listing but not what the drivers need: no pass, no save."""
    keeper, environment = _keeper(site, tmp_path)
    assert keeper.adopt(keeper.download(environment, refetch=True).snapshot, fresh=True)
    saved = (site.config / desired_state.FILE_NAME).stat().st_mtime_ns
    metadata = site.emulator.twins[ARM]["metadata"]

    for level in (81, 80, 79):
        site.emulator.edit_twin(
            ARM, {"metadata": {**metadata, "power": {"battery": level}}}
        )
        download = keeper.download(environment, refetch=False)
        assert keeper.adopt(download.snapshot, fresh=False) is False

    assert (site.config / desired_state.FILE_NAME).stat().st_mtime_ns == saved
    site.emulator.edit_twin(ARM, {"metadata": {**metadata, "camera": "front"}})
    assert keeper.adopt(
        keeper.download(environment, refetch=False).snapshot, fresh=False
    )
