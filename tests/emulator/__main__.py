"""Run the backend emulator as a process (``scripts/demo``, end-to-end tests).

    python -m tests.emulator --port 8765 --fingerprint FP --token cw_demo \
        --broker-host 127.0.0.1 --broker-port 1883 [--fixture FILE] \
        [--topic-prefix dev]

Prints ``emulator listening on http://127.0.0.1:<port>`` once it accepts
requests, then serves until SIGTERM or SIGINT. Without ``--fixture`` the
example environment is loaded when a fingerprint is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from tests.emulator.server import Emulator, read_example_environment


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.emulator", description=__doc__
    )
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port (0: any free port)"
    )
    parser.add_argument("--fixture", type=Path, help="environment JSON to load")
    parser.add_argument("--fingerprint", help="edge fingerprint that replaces <FP>")
    parser.add_argument(
        "--token", action="append", default=[], help="accepted API token (repeatable)"
    )
    parser.add_argument("--broker-host", help="MQTT broker for commands")
    parser.add_argument("--broker-port", type=int, help="MQTT broker port")
    parser.add_argument("--broker-ca-cert", help="CA file when the broker speaks TLS")
    parser.add_argument("--topic-prefix", default="", help="MQTT topic prefix")
    parser.add_argument(
        "--require-workspace",
        action="store_true",
        help="answer 400 workspace_required when ?workspace_uuid is missing",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until a termination signal arrives."""
    args = _arguments(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    emulator = Emulator(tokens=args.token or ["cw_emulator_token"], port=args.port)
    if args.fingerprint:
        fixture = (
            json.loads(args.fixture.read_text())
            if args.fixture
            else read_example_environment()
        )
        emulator.load_environment(fixture, args.fingerprint)
    if args.broker_host and args.broker_port:
        emulator.use_broker(
            args.broker_host,
            args.broker_port,
            ca_cert=args.broker_ca_cert,
            topic_prefix=args.topic_prefix,
        )
    emulator.configure(require_workspace=args.require_workspace)

    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    emulator.start()
    print(f"emulator listening on {emulator.url}", flush=True)
    while not done.wait(0.5):
        pass
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
