"""Twin files that are not what they should be, and edits on both sides.

Each test puts something odd at a twin file's path (a symlink, a FIFO, a
file replaced by rename or deleted, half-written bytes) or edits the
twin on both sides in one cycle, and checks that nothing outside the
twin file is written, nothing blocks, no edit is undone and the driver
is marked for a restart when it holds a stale inode.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from edge_core.model.twins import Twin
from edge_core.twins.files import twin_path
from tests.support.twin_site import ARM, CAMERA, FINGERPRINT, Site


def test_a_twin_whose_uuid_is_no_uuid_gets_no_file(site: Site) -> None:
    """A twin listed as ``credentials`` never reads, writes or opens
    credentials.json (protocol.md 3.2: twin files are named by UUIDs)."""
    secret = site.config / "credentials.json"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text('{"token": "cw_keep_me_private"}')
    secret.chmod(0o600)
    twin = Twin.from_raw({"uuid": "credentials", "metadata": {"a": 1}})
    assert twin is not None

    assert site.sync.ensure_files([twin], {None: {"uuid": "x"}}) == []  # type: ignore[dict-item]
    report = site.sync.sync(
        [{"uuid": "credentials", "metadata": {"a": 1}}], ["credentials"]
    )

    assert twin_path(site.config, "credentials") is None
    assert report.pulled == report.pushed == report.repaired == ()
    assert secret.read_text() == '{"token": "cw_keep_me_private"}'
    assert oct(secret.stat().st_mode & 0o777) == "0o600"


def test_a_symlink_at_the_twin_path_is_replaced_and_its_target_untouched(
    site: Site, tmp_path: Path
) -> None:
    """A symlink to another file is never written through or pushed: it is
    replaced by a regular file of the last good copy, the target keeps its
    bytes and mode, and the driver is marked for a restart."""
    site.ensure(ARM)
    site.cycle()
    good = site.path().read_bytes()
    target = tmp_path / "hostname"
    target.write_text('{"name": "some other config", "secret": "s3cr3t"}')
    target.chmod(0o600)
    site.path().unlink()
    site.path().symlink_to(target)

    report = site.cycle()

    assert report.remount == (ARM,)
    assert not site.path().is_symlink() and site.path().read_bytes() == good
    assert target.read_text() == '{"name": "some other config", "secret": "s3cr3t"}'
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert site.puts() == []
    assert site.cycle().remount == ()


def test_a_fifo_at_one_twin_path_blocks_nothing(site: Site) -> None:
    """A FIFO is never opened for reading: it is replaced at once and the
    other twin's pull goes on in the same cycle."""
    site.ensure(ARM, CAMERA)
    site.cycle(ARM, CAMERA)
    site.path(ARM).unlink()
    os.mkfifo(site.path(ARM))
    metadata = {"edge_fingerprint": FINGERPRINT, "privacy": "on"}
    site.emulator.edit_twin(CAMERA, {"metadata": metadata})

    done = threading.Event()
    result = []

    def cycle() -> None:
        result.append(site.cycle(ARM, CAMERA))
        done.set()

    threading.Thread(target=cycle, daemon=True).start()
    assert done.wait(10), "the sync blocked on the FIFO"

    [report] = result
    assert report.pulled == (CAMERA,)
    assert report.remount == (ARM,)
    assert site.path(ARM).is_file() and site.read(ARM)["uuid"] == ARM


def test_a_file_replaced_by_rename_marks_its_driver_for_a_restart(
    site: Site,
) -> None:
    """A file moved over the twin file (an editor, jq, mv) is pushed as an
    edit, and its driver, which holds the old inode, is marked once."""
    site.ensure(ARM)
    site.cycle()
    document = site.read()
    document["name"] = "renamed by an editor"
    replacement = site.config / "edited.tmp"
    replacement.write_text(json.dumps(document))
    os.replace(replacement, site.path())

    report = site.cycle()

    assert report.remount == (ARM,)
    assert report.pushed == (ARM,)
    assert site.emulator.twins[ARM]["name"] == "renamed by an editor"
    assert site.cycle().remount == ()


def test_a_deleted_file_is_written_again_and_its_driver_marked(site: Site) -> None:
    """A twin file deleted on the host comes back at once from its last
    good copy, and its driver is marked for a restart to mount it."""
    site.ensure(ARM)
    site.cycle()
    good = site.path().read_bytes()
    site.path().unlink()

    report = site.cycle()

    assert report.remount == (ARM,)
    assert site.path().read_bytes() == good
    assert site.cycle() == type(report)()


def test_a_driver_still_writing_is_not_repaired_over(site: Site) -> None:
    """Damaged bytes that change from one cycle to the next (a slow writer)
    are never repaired; once the write is complete it is pushed."""
    site.ensure(ARM)
    site.cycle()
    document = site.read()
    document["name"] = "written slowly"
    whole = json.dumps(document, indent=2).encode()

    site.write_raw(whole[: len(whole) // 3])
    assert site.cycle().repaired == ()
    site.write_raw(whole[: 2 * len(whole) // 3])
    assert site.cycle().repaired == ()
    site.write_raw(whole)

    assert site.cycle().pushed == (ARM,)
    assert site.emulator.twins[ARM]["name"] == "written slowly"


def test_a_web_ui_edit_and_a_driver_edit_in_one_cycle_both_survive(
    site: Site,
) -> None:
    """The UI turns privacy on while the driver adds a calibration: the
    push carries the driver's key onto the backend's metadata, so both
    end up on the backend and, at the next pull, in the file."""
    site.ensure(ARM)
    site.cycle()
    local = site.read()["metadata"]
    site.emulator.edit_twin(ARM, {"metadata": {**local, "privacy": "on"}})
    site.edit(metadata={**local, "calibration": {"done": True}})

    assert site.cycle().pushed == (ARM,)
    [push] = site.puts()
    assert push == {
        "metadata": {**local, "privacy": "on", "calibration": {"done": True}}
    }
    assert site.cycle().pulled == (ARM,)

    for metadata in (site.emulator.twins[ARM]["metadata"], site.read()["metadata"]):
        assert metadata["privacy"] == "on"
        assert metadata["calibration"] == {"done": True}


def test_a_key_the_driver_removed_is_left_out_of_the_push(site: Site) -> None:
    """A metadata key the driver removed is not sent back with the rest
    (whether the backend then drops it is its own merge rule)."""
    site.ensure(ARM)
    site.cycle()
    local = site.read()["metadata"]
    site.emulator.edit_twin(ARM, {"metadata": {**local, "stale": 1}})
    site.cycle()
    assert site.read()["metadata"]["stale"] == 1
    site.edit(metadata=local)

    assert site.cycle().pushed == (ARM,)
    assert "stale" not in site.puts()[-1]["metadata"]


def test_a_web_ui_rename_reaches_an_unedited_file_at_the_next_pass(
    site: Site,
) -> None:
    """The driver pass merges the backend's twin onto a file nobody edited
    (protocol.md 3.7), so a later driver edit does not push the old name."""
    site.ensure(ARM)
    site.cycle()
    inode = site.path().stat().st_ino
    site.emulator.edit_twin(ARM, {"name": "renamed in the UI", "position_x": 1.5})

    assert site.ensure(ARM) == [ARM]
    assert site.read()["name"] == "renamed in the UI"
    assert site.read()["position_x"] == 1.5
    assert site.path().stat().st_ino == inode
    site.edit(metadata={**site.read()["metadata"], "calibration": 2})

    assert site.cycle().pushed == (ARM,)
    assert "name" not in site.puts()[-1]
    assert site.emulator.twins[ARM]["name"] == "renamed in the UI"


def test_the_pass_leaves_a_file_with_an_unpushed_edit_alone(site: Site) -> None:
    """A file the driver edited is not merged over at a pass; the edit is
    pushed by the next cycle."""
    site.ensure(ARM)
    site.cycle()
    site.emulator.edit_twin(ARM, {"name": "renamed in the UI"})
    site.edit(description="set on the robot")

    assert site.ensure(ARM) == []
    assert site.read()["description"] == "set on the robot"
    assert site.cycle().pushed == (ARM,)
    assert site.puts()[-1] == {"description": "set on the robot"}


def test_a_hard_link_at_the_twin_path_never_writes_the_other_file(
    site: Site,
) -> None:
    """A twin path hard-linked to credentials.json is replaced by a file of
    its own: credentials.json keeps its bytes and its 0600 mode, and the
    driver is marked for a restart."""
    site.ensure(ARM)
    site.cycle()
    secret = site.config / "credentials.json"
    secret.write_text('{"token": "cw_keep_me_private"}')
    secret.chmod(0o600)
    site.path().unlink()
    os.link(secret, site.path())
    site.emulator.edit_twin(ARM, {"metadata": {"edge_fingerprint": FINGERPRINT}})

    report = site.cycle()
    site.ensure(ARM)

    assert report.remount == (ARM,)
    assert secret.read_text() == '{"token": "cw_keep_me_private"}'
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    assert secret.stat().st_nlink == 1
    assert site.read()["uuid"] == ARM
