"""Run the edge core end to end on real parts, for a person to look at.

Starts a local Docker registry holding the demo driver images, a Mosquitto
broker, the backend emulator serving the demo environment, and the edge
core itself against a demo config dir. Prints ``status`` once the drivers
run, then keeps everything up until Ctrl-C, and finally removes only what
it started (containers carrying the demo's fingerprint label, the
registry, the broker, the emulator).

Run it through ``scripts/demo``, which installs what is missing first.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import docker
import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.emulator.broker import Broker  # noqa: E402

DEMO_DIR = ROOT / ".demo"
DATA = ROOT / "scripts" / "demo-data"
FINGERPRINT_LABEL = "io.cyberwave.edge.fingerprint"

DRIVER_SCRIPTS = {
    "cyberwaveos/so101-driver:0.0.1": """
echo "INFO so101 driver 0.0.1 starting for twin $CYBERWAVE_TWIN_UUID"
echo "INFO child cameras: ${CYBERWAVE_CHILD_TWIN_UUIDS:-none}"
echo "INFO twin file: $CYBERWAVE_TWIN_JSON_FILE"
n=0
while true; do
  n=$((n+1))
  echo "INFO joint states published (#$n)"
  if [ $((n % 6)) -eq 0 ]; then echo "WARNING gripper current high"; fi
  sleep 5
done
""",
    "cyberwaveos/camera-driver:2.1.0": """
echo "INFO camera driver 2.1.0 starting for twin $CYBERWAVE_TWIN_UUID"
while true; do echo "DEBUG frame batch sent"; sleep 10; done
""",
    "cyberwaveos/conveyor-driver:1.2.0": """
echo "ERROR this driver belongs to another edge and should never start here"
sleep 3600
""",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def say(message: str) -> None:
    # The reader may be gone (a pipe closed by Ctrl-C); cleanup must go on.
    with contextlib.suppress(OSError):
        print(f"demo: {message}", flush=True)


def busybox_tar(script: str) -> bytes:
    """A root file system with busybox and the driver script."""
    buffer = io.BytesIO()
    busybox = Path("/bin/busybox").read_bytes()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add(name: str, data: bytes, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))

        add("bin/busybox", busybox)
        for applet in ("sh", "sleep", "echo", "cat", "env", "ls", "date"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        add("driver.sh", script.encode())
    return buffer.getvalue()


def start_registry(port: int) -> subprocess.Popen[bytes]:
    storage = DEMO_DIR / "registry"
    storage.mkdir(parents=True, exist_ok=True)
    config = DEMO_DIR / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (DEMO_DIR / "registry.log").open("wb")
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    raise SystemExit("demo: the local registry did not start; see .demo/registry.log")


def publish_images(client: docker.DockerClient, registry: str) -> None:
    """Build each demo driver image from busybox and push it to the registry."""
    for ref, script in DRIVER_SCRIPTS.items():
        repo, tag = ref.rsplit(":", 1)
        target = f"{registry}/{repo}"
        client.api.import_image_from_data(
            busybox_tar(script),
            repository=target,
            tag=tag,
            changes=['CMD ["sh", "/driver.sh"]'],
        )
        for line in client.api.push(target, tag=tag, stream=True, decode=True):
            if "error" in line:
                raise SystemExit(
                    f"demo: push of {target}:{tag} failed: {line['error']}"
                )
        # Remove the local copy so the edge core really pulls it.
        client.images.remove(f"{target}:{tag}", force=True)
        say(f"published {target}:{tag} to the local registry")


def write_config(
    config_dir: Path,
    *,
    fingerprint: str,
    token: str,
    emulator_port: int,
    broker_port: int,
    environment: dict,
) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config_dir, 0o700)
    credentials = {
        "token": token,
        "email": "demo@example.com",
        "envs": {
            "CYBERWAVE_BASE_URL": f"http://127.0.0.1:{emulator_port}",
            "CYBERWAVE_MQTT_HOST": "127.0.0.1",
            "CYBERWAVE_MQTT_PORT": str(broker_port),
            "CYBERWAVE_DRIVER_PRIVILEGED": "false",
        },
    }
    files = {
        "credentials.json": credentials,
        "environment.json": {
            "uuid": environment["environment"]["uuid"],
            "name": environment["environment"]["name"],
        },
        "fingerprint.json": {"fingerprint": fingerprint},
    }
    for name, content in files.items():
        path = config_dir / name
        path.write_text(json.dumps(content, indent=2) + "\n")
        os.chmod(path, 0o644 if name == "fingerprint.json" else 0o600)


class Traffic:
    """Counts what crosses the broker, so the demo can show it."""

    def __init__(self, host: str, port: int) -> None:
        self.counts: dict[str, int] = {}
        self.last_lines: list[str] = []
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self._client.on_message = self._on_message
        self._client.on_connect = lambda c, *_: c.subscribe("#")
        self._client.connect(host, port)
        self._client.loop_start()

    def _on_message(
        self, _client: object, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        kind = message.topic.rsplit("/", 1)[-1]
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind == "driverlog":
            payload = json.loads(message.payload)
            line = (
                f"{payload['container_name']} [{payload['level']}] {payload['message']}"
            )
            self.last_lines = [*self.last_lines[-5:], line]

    def stop(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def wait_for_drivers(
    edge: subprocess.Popen[bytes], env: dict[str, str], expected: int, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if edge.poll() is not None:
            raise SystemExit("demo: the edge core exited; see .demo/edge-core.log")
        out = subprocess.run(
            [sys.executable, "-m", "edge_core", "status", "--json", "--offline"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            report = json.loads(out.stdout)
        except ValueError:
            report = {"containers": []}
        running = [c for c in report["containers"] if c["state"] == "running"]
        if len(running) >= expected:
            return
        time.sleep(1)
    raise SystemExit("demo: drivers did not come up in time; see .demo/edge-core.log")


def alert_summary(emulator_port: int) -> str:
    """The emulator's alerts by type and status: `2 driver_starting (resolved)`."""
    url = f"http://127.0.0.1:{emulator_port}/_emulator/alerts"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            alerts = json.loads(answer.read())
    except (OSError, ValueError) as exc:
        return f"could not read them ({exc})"
    counts: dict[str, int] = {}
    for alert in alerts if isinstance(alerts, list) else []:
        key = f"{alert.get('alert_type')} ({str(alert.get('status', '')).lower()})"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {key}" for key, n in sorted(counts.items())) or "none"


def cleanup(
    client: docker.DockerClient,
    fingerprint: str,
    edge: subprocess.Popen[bytes] | None,
    processes: list[subprocess.Popen[bytes]],
    broker: Broker,
    registry_prefix: str | None,
) -> None:
    """Remove what the demo started; each step runs even if another fails."""
    if edge is not None and edge.poll() is None:
        edge.send_signal(signal.SIGTERM)
        try:
            edge.wait(15)
        except subprocess.TimeoutExpired:
            edge.kill()
    label = f"{FINGERPRINT_LABEL}={fingerprint}"
    for container in client.containers.list(all=True, filters={"label": label}):
        try:
            container.remove(force=True, v=True)
            say(f"removed {container.name}")
        except docker.errors.APIError as exc:
            say(f"could not remove {container.name}: {exc}")
    if registry_prefix is not None:
        for image in client.images.list():
            for tag in image.tags:
                if tag.startswith(registry_prefix):
                    with contextlib.suppress(docker.errors.APIError):
                        client.images.remove(tag)
    for process in processes:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
    broker.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--once",
        action="store_true",
        help="print status and clean up instead of waiting for Ctrl-C",
    )
    args = parser.parse_args()
    # A shell starts background jobs with SIGINT ignored; Ctrl-C or
    # kill -INT must stop the demo (and its cleanup run) all the same.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    DEMO_DIR.mkdir()
    client = docker.from_env()
    fingerprint = f"demo-{secrets.token_hex(4)}"
    token = f"cw_demo_{secrets.token_hex(12)}"
    processes: list[subprocess.Popen[bytes]] = []
    # Every helper runs in a session of its own: a Ctrl-C (which also reaches
    # a pipe reader such as tee) is for the demo, which stops them in order.
    broker = Broker(own_session=True)
    edge: subprocess.Popen[bytes] | None = None
    registry_prefix: str | None = None
    try:
        registry = f"127.0.0.1:{free_port()}"
        registry_prefix = f"{registry}/"
        processes.append(start_registry(int(registry.rsplit(":", 1)[1])))
        publish_images(client, registry)

        broker.start()
        say(f"mosquitto listening on {broker.host}:{broker.port}")
        traffic = Traffic(broker.host, broker.port)

        text = (DATA / "environment.json").read_text()
        text = text.replace("<REGISTRY>", registry)
        fixture = DEMO_DIR / "environment.json"
        fixture.write_text(text)
        environment = json.loads(text.replace("<FP>", fingerprint))

        emulator_port = free_port()
        emulator_log = (DEMO_DIR / "emulator.log").open("wb")
        emulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.emulator",
                "--port",
                str(emulator_port),
                "--fixture",
                str(fixture),
                "--fingerprint",
                fingerprint,
                "--token",
                token,
                "--broker-host",
                broker.host,
                "--broker-port",
                str(broker.port),
            ],
            cwd=ROOT,
            stdout=emulator_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(emulator)
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", emulator_port), 0.2):
                    break
            except OSError:
                time.sleep(0.1)
        say(f"backend emulator on http://127.0.0.1:{emulator_port}")

        config_dir = DEMO_DIR / "config"
        write_config(
            config_dir,
            fingerprint=fingerprint,
            token=token,
            emulator_port=emulator_port,
            broker_port=broker.port,
            environment=environment,
        )
        env = dict(
            os.environ,
            CYBERWAVE_EDGE_CONFIG_DIR=str(config_dir),
            CYBERWAVE_RECONCILE_INTERVAL_SECONDS="5",
        )
        edge_log = (DEMO_DIR / "edge-core.log").open("wb")
        edge = subprocess.Popen(
            [sys.executable, "-m", "edge_core"],
            env=env,
            stdout=edge_log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        say(f"edge core started (fingerprint {fingerprint}); log: .demo/edge-core.log")
        wait_for_drivers(edge, env, expected=2, timeout=120)
        say("drivers are running; status (to run it yourself, paste the next line):")
        with contextlib.suppress(OSError):
            print(
                f"CYBERWAVE_EDGE_CONFIG_DIR={config_dir} "
                f"{ROOT / '.venv/bin/cyberwave-edge-core'} status",
                flush=True,
            )
        subprocess.run(
            [sys.executable, "-m", "edge_core", "status"], env=env, check=False
        )
        time.sleep(2)
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(traffic.counts.items()))
        say(f"MQTT messages seen so far: {counts}")
        alerts = alert_summary(emulator_port)
        say(f"alerts the edge core raised in the backend: {alerts}")
        say("latest driver log lines on the driverlog topics:")
        for line in traffic.last_lines:
            print(f"    {line}")
        if args.once:
            return 0
        say("press Ctrl-C (or send SIGTERM) to stop the demo and clean up")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while edge.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            return 0
        say("the edge core exited by itself; see .demo/edge-core.log")
        return 1
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        say("cleaning up")
        cleanup(client, fingerprint, edge, processes, broker, registry_prefix)


if __name__ == "__main__":
    sys.exit(main())
