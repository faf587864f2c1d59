"""Helpers for the tests of the running edge core's reconcile loop.

They build small environments of standalone driver twins (each running
the test driver image with its own ``DRIVER_SCRIPT``), count the loop's
cycles by its one environment listing per cycle, read what the emulator
holds and recorded about alerts and twin pushes, look inside driver
containers, and publish raw bytes on a broker topic (for payloads the
emulator's publisher, which only sends JSON objects, cannot send).

Like the rest of ``tests/support`` it asserts nothing itself beyond the
contract of a helper, and it only touches containers by the names the
tests give it.
"""

from __future__ import annotations

import json
import os
import shlex
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import docker
import paho.mqtt.client as paho
from docker.errors import NotFound
from paho.mqtt.enums import CallbackAPIVersion

from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.docker_helpers import wait_for_drivers
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    EdgeProcess,
    container_name,
)
from tests.support.images import DRIVER_IMAGE

SLEEP_FOREVER = "while true; do sleep 3600; done"
IDLE_SCRIPT = f"echo INFO driver up; {SLEEP_FOREVER}"

LOOP_TIMINGS: Mapping[str, str] = {
    # A driver found stopped is revived at the next pass, not a minute later.
    "CYBERWAVE_DRIVER_REVIVAL_DEBOUNCE_SECONDS": "1",
    "CYBERWAVE_DRIVER_STARTING_ALERT_UPDATE_INTERVAL_SECONDS": "0.5",
}
"""Loop settings on top of ``SHORT_TIMINGS`` for the loop tests."""

TWIN_PUSH_FIELDS = frozenset(
    {
        "name",
        "description",
        *(f"position_{axis}" for axis in "xyz"),
        *(f"rotation_{axis}" for axis in "wxyz"),
        *(f"scale_{axis}" for axis in "xyz"),
        "kinematics_override",
        "joint_calibration",
        "metadata",
        "controller_policy_uuid",
        "attach_to_twin_uuid",
        "attach_to_link",
        *(f"attach_offset_{axis}" for axis in "xyz"),
        *(f"attach_offset_rotation_{axis}" for axis in "wxyz"),
        "fixed_base",
    }
)
"""The top-level fields protocol.md 1.7 lets the edge core push."""


# -- environments of standalone drivers --------------------------------------


def driver_profile(
    script: str, *, extra: Sequence[str] = (), image: str = DRIVER_IMAGE
) -> dict[str, Any]:
    """A ``metadata.drivers`` block running ``script`` (plus ``extra`` params)."""
    params = ["-e", f"DRIVER_SCRIPT={script}", *extra]
    return {"default": {"docker_image": image, "params": params}}


def driver_twin(
    environment_uuid: str,
    asset_uuid: str,
    fingerprint: str,
    script: str,
    *,
    name: str = "Driver twin",
    twin_uuid: str | None = None,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """A twin linked to ``fingerprint`` whose driver runs ``script``."""
    return {
        "uuid": twin_uuid or str(uuid.uuid4()),
        "name": name,
        "asset_uuid": asset_uuid,
        "environment_uuid": environment_uuid,
        "attach_to_twin_uuid": None,
        "metadata": {
            "edge_fingerprint": fingerprint,
            "drivers": driver_profile(script, extra=extra),
        },
    }


@dataclass(frozen=True)
class DriverEnvironment:
    """An environment of standalone driver twins sharing one asset."""

    environment_uuid: str
    asset_uuid: str
    fingerprint: str
    fixture: dict[str, Any] = field(repr=False)

    @property
    def twin_uuids(self) -> tuple[str, ...]:
        return tuple(str(twin["uuid"]) for twin in self.fixture["twins"])

    @property
    def driver_names(self) -> set[str]:
        return {container_name(twin_uuid) for twin_uuid in self.twin_uuids}

    def twin(self, twin_uuid: str) -> dict[str, Any]:
        """The fixture's twin ``twin_uuid`` (as first loaded)."""
        for twin in self.fixture["twins"]:
            if twin["uuid"] == twin_uuid:
                found: dict[str, Any] = twin
                return found
        raise KeyError(twin_uuid)

    def new_twin(self, script: str, **fields: Any) -> dict[str, Any]:
        """A further twin of this environment (not loaded anywhere yet)."""
        return driver_twin(
            self.environment_uuid, self.asset_uuid, self.fingerprint, script, **fields
        )


def driver_environment(
    fingerprint: str, scripts: Sequence[str], *, image: str = DRIVER_IMAGE
) -> DriverEnvironment:
    """A fresh environment with one linked driver twin per script."""
    environment_uuid, asset_uuid = str(uuid.uuid4()), str(uuid.uuid4())
    twins = [
        driver_twin(
            environment_uuid,
            asset_uuid,
            fingerprint,
            script,
            name=f"Driver twin {index}",
        )
        for index, script in enumerate(scripts, start=1)
    ]
    asset = {
        "uuid": asset_uuid,
        "name": "Test robot",
        "registry_id": "cyberwave/test-robot",
        "metadata": {"drivers": {"default": {"docker_image": image}}},
        "capabilities": {"sensors": []},
    }
    fixture = {
        "environment": {"uuid": environment_uuid, "name": "Loop cell"},
        "twins": twins,
        "assets": [asset],
    }
    return DriverEnvironment(environment_uuid, asset_uuid, fingerprint, fixture)


# -- edge cores on such an environment ------------------------------------------


def prepare_loop_edge(
    new_edge: EdgeFactory,
    environment: DriverEnvironment,
    *,
    env: Mapping[str, str | None] | None = None,
) -> EdgeProcess:
    """A not yet started edge core on ``environment`` with ``LOOP_TIMINGS``.

    The environment is loaded into the factory's emulator and selected in
    ``environment.json``; ``env`` adds or overrides settings.
    """
    new_edge.emulator.load_environment(environment.fixture, environment.fingerprint)
    edge = new_edge(None, env={**LOOP_TIMINGS, **(env or {})})
    selected = edge.config_dir / "environment.json"
    selected.write_text(
        json.dumps({"uuid": environment.environment_uuid, "name": "Loop cell"})
    )
    selected.chmod(0o600)
    return edge


def start_loop_edge(
    new_edge: EdgeFactory,
    environment: DriverEnvironment,
    client: docker.DockerClient,
    *,
    env: Mapping[str, str | None] | None = None,
) -> EdgeProcess:
    """Start an edge core on ``environment``; return once all its drivers run.

    Running means the engine runs them and the daemon's state says so, so
    the launches and their startup probes are over.
    """
    edge = prepare_loop_edge(new_edge, environment, env=env).start()
    wait_running(edge, client, environment, what="every driver at boot")
    return edge


def wait_running(
    edge: EdgeProcess,
    client: docker.DockerClient,
    environment: DriverEnvironment,
    *,
    what: str,
) -> None:
    """Wait until the engine runs every driver of ``environment`` and the
    daemon's state file says so (its launches and probes are over)."""
    wait_for_drivers(
        edge, client, environment.fingerprint, environment.driver_names, what=what
    )
    edge.wait_for(
        lambda: settled(edge) >= environment.driver_names,
        timeout=STARTUP_TIMEOUT,
        what=f"{what}, as the daemon's state file says",
    )


@dataclass(frozen=True)
class Listening:
    """An edge core whose drivers run and that listens for edge commands."""

    edge: EdgeProcess
    environment: DriverEnvironment
    edge_uuid: str

    @property
    def topic(self) -> str:
        return f"edges/{self.edge_uuid}/command"


def listening(
    new_edge: EdgeFactory,
    emulator: Emulator,
    broker: Broker,
    client: docker.DockerClient,
    *,
    drivers: int = 2,
    env: Mapping[str, str | None] | None = None,
) -> Listening:
    """``drivers`` idle drivers running, the command topic subscribed,
    commands routable by the emulator."""
    emulator.use_broker(broker.host, broker.port)
    environment = driver_environment(new_edge.fingerprint, [IDLE_SCRIPT] * drivers)
    edge = start_loop_edge(new_edge, environment, client, env=env)
    edge_uuid = wait_edge_uuid(edge, emulator, new_edge.fingerprint)
    edge.wait_for_log(f"listening for commands on edges/{edge_uuid}", timeout=10)
    # The SUBACK follows the log line; a cycle later it has surely arrived.
    wait_cycles(edge, emulator, environment.environment_uuid, 2)
    return Listening(edge, environment, edge_uuid)


def driver_state(edge: EdgeProcess, name: str) -> dict[str, Any]:
    """The daemon's last word on container ``name`` (its state file), or {}."""
    state = edge.state() or {}
    for row in state.get("drivers") or ():
        if row.get("container_name") == name:
            found: dict[str, Any] = row
            return found
    return {}


def settled(edge: EdgeProcess) -> set[str]:
    """The drivers the daemon's state file calls running or adopted."""
    state = edge.state() or {}
    return {
        str(row.get("container_name"))
        for row in state.get("drivers") or ()
        if row.get("outcome") in ("running", "adopted")
    }


# -- the loop's cycles and the edge's identity ---------------------------------


def listing_path(environment_uuid: str) -> str:
    return rf"^/api/v1/environments/{environment_uuid}/twins$"


def listings(emulator: Emulator, environment_uuid: str) -> int:
    """How many environment listings (one per loop cycle) the edge asked for."""
    return len(emulator.requests("GET", listing_path(environment_uuid)))


def wait_cycles(
    edge: EdgeProcess,
    emulator: Emulator,
    environment_uuid: str,
    count: int,
    *,
    timeout: float = STARTUP_TIMEOUT,
) -> None:
    """Wait until the loop has downloaded the environment ``count`` more times."""
    target = listings(emulator, environment_uuid) + count
    edge.wait_for(
        lambda: listings(emulator, environment_uuid) >= target,
        timeout=timeout,
        what=f"{count} more loop cycles",
    )


def wait_edge_uuid(edge: EdgeProcess, emulator: Emulator, fingerprint: str) -> str:
    """The uuid of the edge once the edge core has registered."""
    found = edge.wait_for(
        lambda: emulator.edge_by_fingerprint(fingerprint),
        timeout=STARTUP_TIMEOUT,
        what="the edge's registration",
    )
    return str(found["uuid"])


# -- alerts and pushes the emulator saw -------------------------------------------


def alerts_of(
    emulator: Emulator, twin_uuid: str, alert_type: str, *, status: str | None = None
) -> list[dict[str, Any]]:
    """The emulator's alerts of one twin and type, oldest first."""
    return emulator.alerts(twin_uuid=twin_uuid, alert_type=alert_type, status=status)


def alert_posts(
    emulator: Emulator, alert_type: str, twin_uuid: str | None = None
) -> list[dict[str, Any]]:
    """The bodies of every ``POST /api/v1/alerts`` of ``alert_type``, in order."""
    return [
        request.body
        for request in emulator.requests("POST", r"^/api/v1/alerts$")
        if isinstance(request.body, dict)
        and request.body.get("alert_type") == alert_type
        and (twin_uuid is None or request.body.get("twin_uuid") == twin_uuid)
    ]


def restart_alert(emulator: Emulator, alert_uuid: str) -> dict[str, Any]:
    """The ``edge_core_restart`` alert ``alert_uuid`` as the emulator holds it."""
    [alert] = [a for a in emulator.alerts() if a["uuid"] == alert_uuid]
    return alert


def restart_phase(emulator: Emulator, alert_uuid: str) -> str | None:
    """The phase a restart alert was resolved with; None while it is open."""
    alert = restart_alert(emulator, alert_uuid)
    if alert["status"] != "resolved":
        return None
    phase: str | None = alert["metadata"].get("phase")
    return phase


def wait_restart_phase(edge: EdgeProcess, emulator: Emulator, alert_uuid: str) -> str:
    """Wait until restart alert ``alert_uuid`` is resolved; its final phase."""
    # wait_for returns the first truthy answer: a phase, never None.
    return str(
        edge.wait_for(
            lambda: restart_phase(emulator, alert_uuid),
            timeout=STARTUP_TIMEOUT,
            what="the restart's alert resolved",
        )
    )


def alert_phases(emulator: Emulator, alert_uuid: str) -> list[str]:
    """The phases the edge core PUT on alert ``alert_uuid``, in order."""
    return [
        request.body["metadata"]["phase"]
        for request in emulator.requests("PUT", rf"^/api/v1/alerts/{alert_uuid}$")
    ]


def twin_pushes(emulator: Emulator, twin_uuid: str) -> list[Any]:
    """The ``PUT /api/v1/twins/{uuid}`` requests of one twin, in order."""
    return emulator.requests("PUT", rf"^/api/v1/twins/{twin_uuid}$")


# -- containers ------------------------------------------------------------------


def inspect(client: docker.DockerClient, name: str) -> dict[str, Any] | None:
    """The engine's inspect data of ``name``, or None when it does not exist."""
    try:
        attrs: dict[str, Any] = client.api.inspect_container(name)
    except NotFound:
        return None
    return attrs


def is_running(client: docker.DockerClient, name: str) -> bool:
    attrs = inspect(client, name)
    return attrs is not None and attrs["State"]["Status"] == "running"


def container_env(attrs: Mapping[str, Any]) -> dict[str, str]:
    """The environment of an inspected container, as a dict."""
    pairs = (item.partition("=") for item in attrs["Config"]["Env"] or ())
    return {key: value for key, _, value in pairs}


def run_inside(client: docker.DockerClient, name: str, script: str) -> str:
    """Run ``sh -c script`` in container ``name``; its output (must exit 0)."""
    result = client.api.exec_create(name, ["sh", "-c", script])
    output = client.api.exec_start(result["Id"]).decode("utf-8", "replace")
    code = client.api.exec_inspect(result["Id"])["ExitCode"]
    if code != 0:
        raise AssertionError(f"{script!r} in {name} exited with {code}: {output}")
    return output


def mounted_twin_file(twin_uuid: str) -> str:
    """Where a driver finds its twin's file (protocol.md 4.6)."""
    return f"/app/{twin_uuid}.json"


def read_inside(client: docker.DockerClient, name: str, path: str) -> Any:
    """The JSON document at ``path`` as the container sees it."""
    return json.loads(run_inside(client, name, f"cat {shlex.quote(path)}"))


def write_inside(
    client: docker.DockerClient, name: str, path: str, document: Any
) -> None:
    """Rewrite ``path`` from inside the container, in place, as a driver would.

    A shell redirect truncates and writes the same inode, which is what a
    single-file bind mount allows.
    """
    text = json.dumps(document, indent=2)
    run_inside(
        client, name, f"printf '%s\\n' {shlex.quote(text)} > {shlex.quote(path)}"
    )


def inode_inside(client: docker.DockerClient, name: str, path: str) -> int:
    """The inode number of ``path`` as the container sees it."""
    return int(run_inside(client, name, f"stat -c %i {shlex.quote(path)}").strip())


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- MQTT ------------------------------------------------------------------------------


def publish_raw(
    broker: Broker,
    topic: str,
    payload: bytes,
    timeout: float = 5,
    *,
    retain: bool = False,
) -> None:
    """Publish ``payload`` as is on ``topic`` (QoS 1, so the broker has it);
    ``retain`` asks the broker to keep it for later subscribers."""
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"loop_test_live_{uuid.uuid4().hex}",
        protocol=paho.MQTTv5,
    )
    if broker.ca_cert:
        client.tls_set(ca_certs=broker.ca_cert)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise RuntimeError(
                f"broker {broker.host}:{broker.port} did not take {topic}"
            )
    finally:
        client.disconnect()
        client.loop_stop()
