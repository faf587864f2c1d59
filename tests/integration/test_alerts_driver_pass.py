"""The alerts of a driver pass, on a real Docker engine and the backend emulator.

Each test runs ``DriverReconciler.run_pass`` in-process with a real
``DockerRuntime``, an ``AlertBook`` talking to the emulator over HTTP, and
the test driver image; it then reads what the emulator recorded (requests
in order) and holds (the alert store), and what the engine runs.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from edge_core.alerts.book import AlertBook
from edge_core.alerts.outbox import AlertOutbox
from edge_core.cloud.rest import CloudClient
from edge_core.drivers.logs import LogForwarder
from edge_core.drivers.reconcile import DriverReconciler, PassOptions, PassResult
from edge_core.model.desired import DriverContext, LaunchContext
from edge_core.model.twins import Twin
from edge_core.runtime import DockerRuntime
from edge_core.state import DriverStatus
from tests.emulator.server import Emulator
from tests.support.docker_helpers import pushed_unique_image, running_names
from tests.support.images import DRIVER_COMMAND
from tests.support.registry import LocalRegistry

pytestmark = pytest.mark.integration

ENV = "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90"
WAIT = 60.0
LAUNCH_PHASES = ["starting_container", "container_created", "container_running"]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Rig:
    """One edge's driver pass wired to the emulator and the engine."""

    emulator: Emulator
    fingerprint: str
    book: AlertBook
    reconciler: DriverReconciler
    config_dir: Path
    twins: list[dict[str, Any]] = field(default_factory=list)
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_twin(
        self, image: str | None, *, params: Sequence[str] = ()
    ) -> dict[str, Any]:
        """A linked twin whose driver runs ``image`` (None: no drivers)."""
        asset_uuid = str(uuid.uuid4())
        profile: dict[str, Any] = {"docker_image": image, "params": list(params)}
        metadata: dict[str, Any] = {"edge_fingerprint": self.fingerprint}
        if image is not None:
            metadata["drivers"] = {"default": profile}
        twin = {
            "uuid": str(uuid.uuid4()),
            "name": "SO-101 arm",
            "asset_uuid": asset_uuid,
            "environment_uuid": ENV,
            "metadata": metadata,
        }
        self.twins.append(twin)
        self.assets[asset_uuid] = {"uuid": asset_uuid, "name": "SO-101", "metadata": {}}
        self.emulator.backend.set_twin(twin)
        return twin

    def run(self, **options: Any) -> PassResult:
        """One driver pass over the rig's twins."""
        options.setdefault("pull", False)
        return self.reconciler.run_pass(
            twins=self.twins,
            assets=self.assets,
            ctx=DriverContext(token=self.emulator.token, base_url=self.emulator.url),
            launch=LaunchContext(
                config_dir=self.config_dir,
                version="test",
                fingerprint=self.fingerprint,
                privileged=False,
            ),
            driver_overrides={},
            **options,
        )

    def settle(self) -> None:
        """Wait until every queued alert call was answered."""
        assert self.book.flush(WAIT), "alert calls still unanswered"

    def cards(self, twin: Mapping[str, Any]) -> list[dict[str, Any]]:
        return self.emulator.alerts(
            twin_uuid=twin["uuid"], alert_type="driver_starting"
        )

    def failures(self, twin: Mapping[str, Any]) -> list[dict[str, Any]]:
        return self.emulator.alerts(
            twin_uuid=twin["uuid"], alert_type="driver_start_failure"
        )

    def card_phases(self, card: Mapping[str, Any]) -> list[str]:
        """The phases PUT onto ``card``, in order."""
        return [
            r.body["metadata"]["phase"]
            for r in self.emulator.requests("PUT", f"^/api/v1/alerts/{card['uuid']}$")
        ]


@pytest.fixture
def make_rig(
    emulator: Emulator,
    fingerprint: str,
    docker_runtime: DockerRuntime,
    driver_image: str,
    tmp_path: Path,
) -> Iterator[Callable[..., Rig]]:
    """Rigs on the test's emulator; their threads stop at teardown."""
    closers: list[Callable[[], Any]] = []

    def factory(
        *, timeout: float = 30.0, twin_files: Any = None, probe_timeout: float = 30.0
    ) -> Rig:
        cloud = CloudClient(
            base_url=emulator.url,
            token=lambda: emulator.token,
            version="test",
            timeout=timeout,
            retries=0,
        )
        outbox = AlertOutbox(cloud, retry_initial=0.05, retry_max=0.2)
        book = AlertBook(
            cloud,
            outbox,
            workspace_id=None,
            troubleshooting_url="https://docs.example",
            update_interval=0.5,
        )
        published: list[tuple[str, Mapping[str, Any]]] = []
        forwarder = LogForwarder(
            docker_runtime,
            lambda topic, payload: published.append((topic, payload)) or True,
            version="test",
            cold_start_tail=10,
            fingerprint=fingerprint,
        )
        reconciler = DriverReconciler(
            docker_runtime,
            options=PassOptions(
                config_dir=tmp_path,
                fingerprint=fingerprint,
                topic_prefix="",
                version="test",
                profile_keys=("linux-x86_64", "linux"),
                probe_timeout=probe_timeout,
                probe_interval=0.2,
            ),
            publish=lambda topic, payload: published.append((topic, payload)) or True,
            forwarder=forwarder,
            alerts=book,
            twin_files=twin_files,
        )
        closers.extend([forwarder.stop, lambda: book.stop(1.0), cloud.close])
        return Rig(emulator, fingerprint, book, reconciler, tmp_path)

    yield factory
    for close in closers:
        close()


def status_of(result: PassResult, twin: Mapping[str, Any]) -> DriverStatus:
    [status] = [d for d in result.drivers if d.twin_uuid == twin["uuid"]]
    return status


# -- the starting card of a launch --------------------------------------------


def test_a_launch_opens_a_forced_card_walks_its_phases_and_resolves_it(
    make_rig: Callable[..., Rig],
    driver_image: str,
    docker_client: docker.DockerClient,
    fingerprint: str,
) -> None:
    """Stale cards are cleared first; the new card ends resolved at running."""
    rig = make_rig()
    twin = rig.add_twin(driver_image)
    rig.book.raise_alert(
        alert_type="driver_starting", twin_uuid=twin["uuid"], environment_uuid=ENV
    )
    rig.settle()
    rig.emulator.clear_requests()

    result = rig.run()
    rig.settle()

    status = status_of(result, twin)
    assert status.outcome == "running"
    assert result.launched == (status.container_name,)
    assert status.container_name in running_names(docker_client, fingerprint)
    [stale] = [a for a in rig.cards(twin) if "container_name" not in a["metadata"]]
    [card] = [a for a in rig.cards(twin) if "container_name" in a["metadata"]]
    assert stale["status"] == "resolved"
    assert card["status"] == "resolved"
    assert card["environment_uuid"] == ENV
    assert rig.card_phases(card) == ["pull_skipped", *LAUNCH_PHASES]
    calls = [
        (r.method, r.path) for r in rig.emulator.requests(path_regex="^/api/v1/alerts")
    ]
    assert calls[:3] == [
        ("GET", "/api/v1/alerts"),
        ("POST", f"/api/v1/alerts/{stale['uuid']}/resolve"),
        ("POST", "/api/v1/alerts"),
    ], "the stale cleanup (R11, R14) goes before the new card"
    [create] = [
        r.body
        for r in rig.emulator.requests("POST", "^/api/v1/alerts$")
        if r.body["metadata"]["container_name"] == status.container_name
    ]
    assert create["force"] is True
    assert create["metadata"]["phase"] == "pull_started"
    assert create["metadata"]["image"] == driver_image
    assert rig.emulator.requests("GET", "^/api/v1/twins/") == []


def test_a_pulled_image_shows_its_download_on_the_card(
    make_rig: Callable[..., Rig],
    docker_client: docker.DockerClient,
    registry: LocalRegistry,
) -> None:
    """A real pull moves the card through downloading to pull_complete."""
    with pushed_unique_image(
        docker_client, registry, "cw-test/alerts", "1", command=DRIVER_COMMAND
    ) as ref:
        rig = make_rig()
        twin = rig.add_twin(ref)
        result = rig.run(pull=True)
        rig.settle()

    assert status_of(result, twin).outcome == "running"
    [card] = rig.cards(twin)
    phases = rig.card_phases(card)
    assert "downloading" in phases
    assert phases[-5:] == ["pull_complete", "pull_stream_finished", *LAUNCH_PHASES]
    puts = rig.emulator.requests("PUT", f"^/api/v1/alerts/{card['uuid']}$")
    complete = next(
        r.body["metadata"]
        for r in puts
        if r.body["metadata"]["phase"] == "pull_complete"
    )
    assert complete["progress_percent"] == 100
    assert complete["layers_total"] >= 1
    assert complete["downloaded_bytes"] > 0
    assert complete["total_human"] is not None
    assert card["status"] == "resolved"


def test_an_adopted_container_gets_no_new_card(
    make_rig: Callable[..., Rig], driver_image: str
) -> None:
    """A running container of the same spec is adopted without a card."""
    first = make_rig()
    twin = first.add_twin(driver_image)
    assert status_of(first.run(), twin).outcome == "running"
    first.settle()

    # A new edge core process adopts what the previous one started.
    second = make_rig()
    second.twins, second.assets = first.twins, first.assets
    second.emulator.clear_requests()
    result = second.run()
    second.settle()

    assert status_of(result, twin).outcome == "adopted"
    assert second.emulator.requests("POST", "^/api/v1/alerts$") == []
    assert second.emulator.requests("PUT") == []
    [card] = second.cards(twin)
    assert card["status"] == "resolved"


# -- failures -----------------------------------------------------------------


def test_a_missing_image_fails_its_card_and_raises_a_start_failure(
    make_rig: Callable[..., Rig],
    driver_image: str,
    emulator: Emulator,
) -> None:
    """image_missing on a critical resolved card, "Driver image not available",
    no token anywhere; a later good pass resolves the start failure."""
    rig = make_rig()
    # The reference carries the API token, so redaction is put to the test.
    missing = f"127.0.0.1:1/{emulator.token}/driver:1"
    twin = rig.add_twin(missing)
    result = rig.run(pull=True)
    rig.settle()

    status = status_of(result, twin)
    assert (status.outcome, status.phase) == ("failed", "image_missing")
    [card] = rig.cards(twin)
    assert card["status"] == "resolved"
    assert card["severity"] == "critical"
    metadata = card["metadata"]
    assert metadata["failed"] is True
    assert metadata["phase"] in ("image_missing", "pull_failed")
    assert metadata["technical_detail"]
    [failure] = rig.failures(twin)
    assert (failure["name"], failure["status"]) == (
        "Driver image not available",
        "active",
    )
    sent = json.dumps([r.body for r in emulator.requests()])
    assert emulator.token not in sent

    # While its retry waits, the held driver says which launch failed.
    held = rig.run(hold={status.container_name: "next try in 30 s"})
    assert status_of(held, twin).phase == "image_missing"
    rig.settle()
    assert len(rig.cards(twin)) == 1

    twin["metadata"]["drivers"]["default"]["docker_image"] = driver_image
    assert status_of(rig.run(), twin).outcome == "running"
    rig.settle()
    [failure] = rig.failures(twin)
    assert failure["status"] == "resolved"


def test_a_driver_that_never_runs_raises_driver_failed_to_start(
    make_rig: Callable[..., Rig], driver_image: str
) -> None:
    """A container that exits fails the probe: its card says so, with its output."""
    rig = make_rig(probe_timeout=3.0)
    script = "echo ERROR no arm on /dev/ttyACM0; exit 3"
    twin = rig.add_twin(
        driver_image, params=["--restart", "no", "-e", f"DRIVER_SCRIPT={script}"]
    )
    result = rig.run()
    rig.settle()

    assert status_of(result, twin).outcome == "failed"
    [card] = rig.cards(twin)
    assert card["status"] == "resolved"
    assert card["metadata"]["phase"] in (
        "docker_start_failed",
        "container_startup_timeout",
    )
    assert "no arm on /dev/ttyACM0" in card["metadata"]["technical_detail"]
    [failure] = rig.failures(twin)
    assert failure["name"] == "Driver failed to start"


def test_a_spec_failure_is_raised_once_while_it_lasts(
    make_rig: Callable[..., Rig],
) -> None:
    """A twin without drivers gets "No drivers specified", posted once
    however many passes find it so."""
    rig = make_rig()
    twin = rig.add_twin(None)
    rig.run()
    rig.run()
    rig.run()
    rig.settle()
    [failure] = rig.failures(twin)
    assert failure["name"] == "No drivers specified"
    assert failure["dedupe_count"] == 1
    assert rig.cards(twin) == []


# -- a backend that is away ---------------------------------------------------


@pytest.mark.parametrize("fault", ["500", "hang"])
def test_a_broken_backend_does_not_hold_up_the_launch(
    make_rig: Callable[..., Rig],
    driver_image: str,
    emulator: Emulator,
    docker_client: docker.DockerClient,
    fingerprint: str,
    fault: str,
) -> None:
    """The driver runs while every alert call fails or hangs; the card catches
    up once the backend is back."""
    rig = make_rig()
    twin = rig.add_twin(driver_image)
    if fault == "hang":
        emulator.fault("^/api/v1/alerts", hang=True)
    else:
        emulator.fault("^/api/v1/alerts", status=500)

    result = rig.run()
    status = status_of(result, twin)
    assert status.outcome == "running"
    assert status.container_name in running_names(docker_client, fingerprint)
    assert rig.book.outbox.pending > 0
    assert all(a["status"] != "resolved" for a in rig.cards(twin))

    emulator.clear_faults()
    rig.settle()
    cards = [c for c in rig.cards(twin) if c["metadata"].get("container_name")]
    assert [c["status"] for c in cards] == ["resolved"]
    assert cards[0]["metadata"]["phase"] == "container_running"


# -- held drivers and twin files ----------------------------------------------


def test_held_drivers_are_neither_launched_nor_orphans(
    make_rig: Callable[..., Rig],
    driver_image: str,
    docker_client: docker.DockerClient,
    fingerprint: str,
) -> None:
    """A held spec gets outcome held with its reason, a hash, and no card."""
    rig = make_rig()
    twin = rig.add_twin(driver_image)
    name = f"cyberwave-driver-{twin['uuid'][:8]}"
    result = rig.run(hold={name: "parked after a restart loop"})
    rig.settle()

    status = status_of(result, twin)
    assert (status.outcome, status.reason) == ("held", "parked after a restart loop")
    assert result.held == (name,)
    assert result.orphans == ()
    assert result.desired[name][0] == twin["uuid"]
    assert name not in running_names(docker_client, fingerprint)
    assert rig.cards(twin) == []

    launched = rig.run()
    assert result.desired[name] == launched.desired[name], "same spec hash"


def test_twin_files_can_be_written_by_the_caller(
    make_rig: Callable[..., Rig], driver_image: str, tmp_path: Path
) -> None:
    """Given ``twin_files``, the pass hands it the linked twins and writes none."""
    seen: list[tuple[list[str], list[str]]] = []

    def write(linked: Sequence[Twin], assets: Mapping[str, Mapping[str, Any]]) -> None:
        seen.append(([t.uuid for t in linked], sorted(assets)))

    rig = make_rig(twin_files=write)
    twin = rig.add_twin(driver_image)
    assert status_of(rig.run(), twin).outcome == "running"
    assert seen == [([twin["uuid"]], sorted(rig.assets))]
    assert not (tmp_path / f"{twin['uuid']}.json").exists()
