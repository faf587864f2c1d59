"""Twin JSON sync both ways against the in-process backend emulator.

Each test downloads the example environment through the real REST client,
lets ``TwinSync`` write the twin files, edits them the way a driver would
(in place, same inode) and runs sync cycles, checking what the emulator
received and what is on disk.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest

from edge_core.twins import desired_state
from edge_core.twins.backups import BACKUP_DIR
from edge_core.twins.sync import SyncReport, TwinSync
from tests.support.twin_site import ARM, CAMERA, ENV, FINGERPRINT, PUT_TWIN, Site

# -- baselines and first sighting ------------------------------------------------


def test_first_sighting_only_records_a_baseline(site: Site) -> None:
    """A file the edge core has never seen is not pushed; its checksum is kept."""
    site.path().write_text(json.dumps({"uuid": ARM, "name": "written by the CLI"}))

    report = site.cycle()

    assert report.recorded == (ARM,)
    assert report.pushed == ()
    assert site.puts() == []
    assert ARM in site.sync.baselines()


def test_files_the_edge_core_writes_are_not_pushed(site: Site) -> None:
    """A freshly written file is its own baseline, so nothing is pushed."""
    assert site.ensure(ARM) == [ARM]

    report = site.cycle()

    assert report == SyncReport()
    assert site.puts() == []
    assert site.read()["asset"]["uuid"] == "e2d1c0b9-8a7f-4e6d-9c5b-4a3f2e1d0c9b"


def test_existing_valid_file_is_not_overwritten(site: Site) -> None:
    """The driver pass keeps a file's local edit; the sync pushes it."""
    site.ensure(ARM)
    site.edit(name="renamed on the robot")

    assert site.ensure(ARM) == []

    assert site.read()["name"] == "renamed on the robot"
    assert site.cycle().pushed == (ARM,)


def test_directory_left_by_docker_becomes_the_file(site: Site) -> None:
    """An empty directory where the file belongs (Docker made it) is replaced."""
    site.path().mkdir()

    assert site.ensure(ARM) == [ARM]

    assert site.read()["uuid"] == ARM


# -- push --------------------------------------------------------------------------


def test_driver_edit_is_pushed_with_only_allowed_fields(site: Site) -> None:
    """Only the allowed fields (protocol.md 1.7) the edit changed go out;
    never asset_uuid, environment_uuid or a key the driver made up."""
    site.ensure(ARM)
    site.cycle()
    site.edit(
        name="left arm (calibrated)",
        asset_uuid="00000000-0000-4000-8000-000000000000",
        environment_uuid="00000000-0000-4000-8000-000000000001",
        joint_states={"gripper": 0.5},
        local_only=True,
    )

    report = site.cycle()

    assert report.pushed == (ARM,)
    (body,) = site.puts()
    assert "asset_uuid" not in body
    assert "environment_uuid" not in body
    assert body == {"name": "left arm (calibrated)"}
    assert site.emulator.twins[ARM]["name"] == "left arm (calibrated)"
    assert site.emulator.twins[ARM]["asset_uuid"] != body.get("asset_uuid")


def test_a_pushed_edit_is_pushed_once(site: Site) -> None:
    """After a successful push the new checksum is the baseline."""
    site.ensure(ARM)
    site.cycle()
    site.edit(name="once")

    first = site.cycle()
    second = site.cycle()

    assert first.pushed == (ARM,)
    assert second.pushed == ()
    assert len(site.puts()) == 1


def test_wrong_typed_field_is_dropped_with_one_warning(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """A field of the wrong type is left out; the rest is pushed; one warning."""
    site.ensure(ARM)
    site.cycle()
    site.edit(position_x="far left", fixed_base="yes", name="typed")

    with caplog.at_level(logging.DEBUG, logger="edge_core.twins.sync"):
        report = site.cycle()
        site.edit(name="typed again")
        site.cycle()

    assert report.pushed == (ARM,)
    first, second = site.puts()
    assert "position_x" not in first and "fixed_base" not in first
    assert first["name"] == "typed"
    assert second["name"] == "typed again"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert any(str(site.path()) in w and '"position_x"' in w for w in warnings)
    assert any('"fixed_base"' in w and "boolean" in w for w in warnings)


def test_push_failure_keeps_the_file_and_retries_next_cycle(site: Site) -> None:
    """A 500 on PUT leaves file and baseline alone; the next cycle pushes it."""
    site.ensure(ARM)
    site.cycle()
    baseline = site.sync.baselines()[ARM]
    site.edit(name="pushed later")
    site.emulator.fault(PUT_TWIN, method="PUT", status=500, times=1)

    failed = site.cycle()

    assert failed.failed == (ARM,)
    assert failed.pushed == ()
    assert site.read()["name"] == "pushed later"
    assert site.sync.baselines()[ARM] == baseline
    assert site.emulator.twins[ARM]["name"] != "pushed later"

    retried = site.cycle()

    assert retried.pushed == (ARM,)
    assert site.emulator.twins[ARM]["name"] == "pushed later"
    assert site.sync.baselines()[ARM] != baseline


def test_unreachable_backend_is_tried_once_per_cycle(site: Site) -> None:
    """After one push finds the backend down, the others wait for the next cycle."""
    site.ensure(ARM, CAMERA)
    site.cycle(ARM, CAMERA)
    site.edit(ARM, name="arm edit")
    site.edit(CAMERA, name="camera edit")
    site.emulator.fault(PUT_TWIN, method="PUT", status=503)

    report = site.cycle(ARM, CAMERA)

    assert set(report.failed) == {ARM, CAMERA}
    assert len(site.puts()) == 1
    site.emulator.clear_faults()
    assert set(site.cycle(ARM, CAMERA).pushed) == {ARM, CAMERA}


def test_a_twin_the_backend_keeps_refusing_goes_last(site: Site) -> None:
    """A twin whose push failed is tried after the others in the next cycle."""
    site.ensure(ARM, CAMERA)
    site.cycle(ARM, CAMERA)
    site.edit(ARM, name="arm edit")
    site.emulator.fault(rf"/twins/{ARM}$", method="PUT", status=503)
    assert site.cycle(ARM, CAMERA).failed == (ARM,)
    site.edit(CAMERA, name="camera edit")

    report = site.cycle(ARM, CAMERA)

    assert report.pushed == (CAMERA,)
    assert report.failed == (ARM,)
    assert site.emulator.twins[CAMERA]["name"] == "camera edit"


def test_content_the_backend_refused_is_kept_and_not_sent_again(
    site: Site,
) -> None:
    """A push answered 422 keeps the file; the same content is not PUT again
    every cycle, and the driver's next edit is pushed."""
    site.ensure(ARM)
    site.cycle(ARM)
    site.edit(ARM, name="refused edit")
    site.emulator.fault(rf"/twins/{ARM}$", method="PUT", status=422, times=1)

    assert site.cycle(ARM).failed == (ARM,)
    assert site.cycle(ARM).failed == (ARM,)
    assert site.cycle(ARM).failed == (ARM,)
    assert len(site.puts()) == 1
    assert site.path(ARM).exists()

    [problem] = site.sync.problems()
    assert "the backend refused twin file" in problem and "422" in problem

    site.edit(ARM, name="accepted edit")
    assert site.cycle(ARM).pushed == (ARM,)
    assert site.emulator.twins[ARM]["name"] == "accepted edit"
    assert site.sync.problems() == ()


def test_refused_content_is_sent_again_ever_less_often_until_taken(
    site: Site,
) -> None:
    """A refusal that passes (a 409 while the backend is busy) does not keep
    the edit from the backend for good: the same content is sent again
    after 2, 4, then 8 cycles, and once it is taken the file is in step."""
    site.ensure(ARM)
    site.cycle(ARM)
    site.edit(ARM, name="refused for a while")
    fault = site.emulator.fault(rf"/twins/{ARM}$", method="PUT", status=409)

    sent = [len(site.puts()) for _ in range(9) if site.cycle(ARM).failed]

    assert sent == [1, 1, 1, 2, 2, 2, 2, 2, 3]
    site.emulator.remove_fault(fault)
    reports = [site.cycle(ARM) for _ in range(9)]
    assert [r.pushed for r in reports] == [()] * 8 + [(ARM,)]
    assert site.emulator.twins[ARM]["name"] == "refused for a while"
    assert site.sync.problems() == ()


def test_edit_made_while_down_is_pushed_at_first_cycle(site: Site) -> None:
    """With the baseline persisted in desired-state.json, a later edit is pushed."""
    site.ensure(ARM)
    site.cycle()
    snapshot = desired_state.new_snapshot(ENV, site.listing(), {})
    desired_state.save(site.config, snapshot)
    assert site.sync.dirty
    assert site.sync.persist()
    assert not site.sync.dirty

    site.edit(name="edited while the edge core was stopped")
    saved = desired_state.load(site.config)
    assert saved is not None
    restarted = TwinSync(site.config, site.client, baselines=saved.twin_baselines)
    report = site.cycle(sync=restarted)

    assert report.pushed == (ARM,)
    assert site.emulator.twins[ARM]["name"] == "edited while the edge core was stopped"


def test_without_a_persisted_baseline_the_same_edit_is_only_recorded(
    site: Site,
) -> None:
    """The contrast: a fresh start with no baselines treats the file as new."""
    site.ensure(ARM)
    site.edit(name="edited while the edge core was stopped")

    report = site.cycle(sync=TwinSync(site.config, site.client))

    assert report.recorded == (ARM,)
    assert site.puts() == []


def test_concurrent_pushes_send_one_put(site: Site) -> None:
    """The loop and a restart job pushing at once send a change only once."""
    site.ensure(ARM)
    site.cycle()
    site.edit(name="raced")
    site.emulator.fault(PUT_TWIN, method="PUT", delay=0.2, times=1)
    results: list[Any] = []

    threads = [
        threading.Thread(target=lambda: results.append(site.sync.push_changed())),
        threading.Thread(target=lambda: results.append(site.cycle())),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(site.puts()) == 1
    assert sum(len(r.pushed) for r in results) == 1


# -- pull --------------------------------------------------------------------------


def test_backend_metadata_is_pulled_in_place(site: Site) -> None:
    """Changed backend metadata replaces the local one; other keys stay; same inode."""
    site.ensure(ARM)
    site.cycle()
    site.edit(driver_state={"homed": True})
    site.cycle()
    inode = site.path().stat().st_ino
    metadata = {"edge_fingerprint": FINGERPRINT, "privacy_filter": True}
    site.emulator.edit_twin(ARM, {"metadata": metadata, "name": "renamed in the UI"})
    site.emulator.clear_requests()

    report = site.cycle()

    assert report.pulled == (ARM,)
    data = site.read()
    assert data["metadata"] == metadata
    assert data["driver_state"] == {"homed": True}
    assert data["name"] != "renamed in the UI"
    assert data["asset"]["uuid"] == "e2d1c0b9-8a7f-4e6d-9c5b-4a3f2e1d0c9b"
    assert site.path().stat().st_ino == inode
    assert oct(site.path().stat().st_mode & 0o777) == "0o644"
    assert site.path().read_text().endswith("}\n")
    assert site.puts() == []
    assert site.cycle() == SyncReport()


def test_push_wins_over_pull_in_the_same_cycle(site: Site) -> None:
    """A locally changed file is pushed, not overwritten; the pull comes next cycle."""
    site.ensure(ARM)
    site.cycle()
    local_metadata = dict(site.read()["metadata"], calibrated=True)
    site.edit(metadata=local_metadata)
    site.emulator.edit_twin(
        ARM, {"metadata": {"edge_fingerprint": FINGERPRINT, "ui_flag": 1}}
    )

    report = site.cycle()

    assert report.pushed == (ARM,)
    assert report.pulled == ()
    assert site.read()["metadata"] == local_metadata

    following = site.cycle()

    assert following.pulled == (ARM,)
    assert site.read()["metadata"] == site.emulator.twins[ARM]["metadata"]
    assert site.read()["metadata"]["ui_flag"] == 1
    assert site.read()["metadata"]["calibrated"] is True


def test_twin_missing_from_the_listing_is_left_alone(site: Site) -> None:
    """No push, pull or repair for a twin the listing does not hold."""
    site.ensure(ARM)
    site.cycle()
    site.edit(name="not pushed")

    report = site.sync.sync([], [ARM])

    assert report == SyncReport()
    assert site.puts() == []


# -- repair ------------------------------------------------------------------------


def test_corrupt_file_is_repaired_from_the_last_good_copy(site: Site) -> None:
    """Damaged bytes seen twice in a row are backed up, the good copy
    restored in place, nothing pushed."""
    site.ensure(ARM)
    site.cycle()
    good = site.path().read_bytes()
    inode = site.path().stat().st_ino
    site.write_raw(b'{"name": "half written')

    assert site.cycle() == SyncReport()
    report = site.cycle()

    assert report.repaired == (ARM,)
    assert report.pushed == ()
    assert site.puts() == []
    assert site.path().read_bytes() == good
    assert site.path().stat().st_ino == inode
    (backup,) = (site.config / BACKUP_DIR).iterdir()
    assert backup.name.startswith(f"{ARM}-") and backup.name.endswith(".corrupt")
    assert backup.read_bytes() == b'{"name": "half written'
    assert site.cycle() == SyncReport()


def test_restored_unpushed_edit_is_pushed_next_cycle(site: Site) -> None:
    """A good copy holding an edit whose push failed is still pushed after repair."""
    site.ensure(ARM)
    site.cycle()
    site.edit(name="edit before the damage")
    site.emulator.fault(PUT_TWIN, method="PUT", status=500, times=1)
    assert site.cycle().failed == (ARM,)
    site.write_raw(b"\x00\x00")

    assert site.cycle().repaired == ()
    assert site.cycle().repaired == (ARM,)
    assert site.cycle().pushed == (ARM,)
    assert site.emulator.twins[ARM]["name"] == "edit before the damage"


def test_corrupt_file_without_good_copy_is_rewritten_from_the_cloud(
    site: Site,
) -> None:
    """With no copy in memory, the driver pass rewrites the cloud's document
    (at its second look: the first leaves a writer time to finish)."""
    site.path().write_text("[1, 2, 3]\n")

    assert site.ensure(ARM) == []
    assert site.ensure(ARM) == [ARM]

    data = site.read()
    assert data["uuid"] == ARM
    assert data["asset"]["uuid"] == "e2d1c0b9-8a7f-4e6d-9c5b-4a3f2e1d0c9b"
    (backup,) = (site.config / BACKUP_DIR).iterdir()
    assert backup.read_text() == "[1, 2, 3]\n"
    assert site.cycle() == SyncReport()


def test_sync_repairs_from_the_listing_when_nothing_else_is_known(
    site: Site,
) -> None:
    """A fresh sync finding a damaged file writes the listing's twin into it."""
    site.path().write_text("{")

    assert site.cycle().repaired == ()
    report = site.cycle()

    assert report.repaired == (ARM,)
    assert site.read()["name"] == site.emulator.twins[ARM]["name"]
    assert site.puts() == []


def test_only_the_newest_backups_are_kept(site: Site) -> None:
    """Each twin keeps its five newest backups of damaged content."""
    site.ensure(ARM)
    site.cycle()
    for number in range(7):
        site.write_raw(f"damaged {number}".encode())
        assert site.cycle().repaired == ()
        assert site.cycle().repaired == (ARM,)

    backups = sorted(p.read_text() for p in (site.config / BACKUP_DIR).iterdir())
    assert backups == [f"damaged {n}" for n in range(2, 7)]


# -- remote restart ----------------------------------------------------------------


def test_push_changed_then_remove_files_keeps_failed_pushes(site: Site) -> None:
    """Restart steps 4 and 5: pushed files go, a file whose push failed stays."""
    site.ensure(ARM, CAMERA)
    site.cycle(ARM, CAMERA)
    site.edit(ARM, name="arm edit")
    site.edit(CAMERA, name="camera edit")
    site.emulator.fault(rf"/twins/{ARM}$", method="PUT", status=400)

    pushed = site.sync.push_changed()

    assert pushed.pushed == (CAMERA,)
    assert pushed.failed == (ARM,)

    removed = site.sync.remove_files(keep=set(pushed.failed))

    assert removed == [CAMERA]
    assert site.path(ARM).exists()
    assert not site.path(CAMERA).exists()
    assert set(site.sync.baselines()) == {ARM}
    assert site.emulator.twins[CAMERA]["name"] == "camera edit"


def test_remove_files_keeps_an_unpushed_edit_even_if_not_named(site: Site) -> None:
    """Without a push first (backend away), a changed file still survives."""
    site.ensure(ARM, CAMERA)
    site.cycle(ARM, CAMERA)
    site.edit(ARM, name="never pushed")
    stray = site.config / "0d6e5f4a-3b2c-4d1e-9f8a-7b6c5d4e3f2a.json"
    stray.write_text("{}")
    other = site.config / "edge.json"
    other.write_text("{}")

    removed = site.sync.remove_files()

    assert sorted(removed) == sorted([CAMERA, stray.stem])
    assert site.read(ARM)["name"] == "never pushed"
    assert other.exists()


def test_files_are_written_again_after_removal(site: Site) -> None:
    """After a restart's removal the driver pass writes fresh files and baselines."""
    site.ensure(ARM)
    site.cycle()
    site.sync.remove_files()
    assert not site.path().exists()

    assert site.ensure(ARM) == [ARM]
    assert site.cycle() == SyncReport()


# -- baselines bookkeeping ------------------------------------------------------------


def test_version_grows_only_when_baselines_change(site: Site) -> None:
    """The daemon saves the snapshot only when the baselines changed."""
    start = site.sync.version
    site.ensure(ARM)
    after_write = site.sync.version
    site.cycle()

    assert after_write > start
    assert site.sync.version == after_write
    site.sync.mark_saved(after_write)
    assert not site.sync.dirty
    assert not site.sync.persist()


def test_persist_without_a_saved_snapshot_writes_nothing(site: Site) -> None:
    """Baselines have nowhere to go before the first download is saved."""
    site.ensure(ARM)

    assert not site.sync.persist()

    assert not (site.config / desired_state.FILE_NAME).exists()
    assert site.sync.dirty


def test_a_directory_with_files_at_the_twin_path_is_moved_aside(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """A directory holding files where a twin file belongs is renamed, its
    files kept, and the twin file written; one warning names both paths."""
    blocked = site.path(ARM)
    blocked.mkdir()
    (blocked / "keep").write_text("not empty")

    with caplog.at_level(logging.WARNING):
        written = site.ensure(ARM, CAMERA)
        site.ensure(ARM, CAMERA)

    assert written == [ARM, CAMERA]
    assert site.read(ARM)["uuid"] == ARM
    [aside] = [p for p in site.config.iterdir() if ".moved-aside-" in p.name]
    assert (aside / "keep").read_text() == "not empty"
    warned = [r for r in caplog.records if str(blocked) in r.getMessage()]
    assert len(warned) == 1 and str(aside) in warned[0].getMessage()
