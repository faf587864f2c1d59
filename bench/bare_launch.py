"""The baseline: create and start containers with nothing but the docker SDK.

    python bench/bare_launch.py PLAN.json

PLAN.json holds ``{"pull": bool, "parallel": int, "containers": [{"name",
"image", "env", "labels", "binds"}]}``. With ``pull`` every distinct
image is pulled first; then each container is created and started, with
the options the edge core gives a driver (host network, ``--init``,
``unless-stopped``, stop timeout 5 s, json-file logs capped at 10m x 3).
``parallel`` (default 1: one after the other) is how many pulls, and
then how many create-and-start pairs, run at once. It exits once the
last start was accepted; the bench watches Docker to see them running.

It deliberately does what a careful shell script would and nothing more:
no inspection, no probing, no REST, no MQTT. That is the floor the edge
core's start-up is compared with.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker


def launch(plan: dict[str, Any]) -> None:
    """Pull (optionally), then create and start each container."""
    api = docker.from_env(timeout=120).api
    containers: list[dict[str, Any]] = plan["containers"]
    parallel = max(1, int(plan.get("parallel", 1)))

    def pull(image: str) -> None:
        repository, _, tag = image.rpartition(":")
        for _line in api.pull(repository, tag=tag, stream=True, decode=True):
            pass

    def create_and_start(container: dict[str, Any]) -> None:
        host_config = api.create_host_config(
            network_mode="host",
            init=True,
            restart_policy={"Name": "unless-stopped"},
            log_config={
                "Type": "json-file",
                "Config": {"max-size": "10m", "max-file": "3"},
            },
            binds=container["binds"],
        )
        created = api.create_container(
            container["image"],
            name=container["name"],
            environment=container["env"],
            labels=container["labels"],
            stop_timeout=5,
            host_config=host_config,
        )
        api.start(created["Id"])

    images = list(dict.fromkeys(c["image"] for c in containers))
    if parallel == 1:
        for image in images if plan.get("pull") else []:
            pull(image)
        for container in containers:
            create_and_start(container)
        return
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        if plan.get("pull"):
            list(pool.map(pull, images))
        list(pool.map(create_and_start, containers))


def main(argv: list[str]) -> int:
    """Run the plan named on the command line."""
    if len(argv) != 2:
        sys.stderr.write("usage: bare_launch.py PLAN.json\n")
        return 2
    launch(json.loads(Path(argv[1]).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
