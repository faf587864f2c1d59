"""The start-up benchmark of cyberwave-edge-core, on real parts.

    bench/startup [--counts 1,10,30] [--reps 3] [--no-registry] [--keep]

Every figure is printed next to a reference measured in the same run on
the same machine, as a ratio, because absolute seconds say more about
the machine than about the edge core:

1. Time from spawning ``python -m edge_core`` until Docker lists all N
   driver containers running (N linked twins, each with its own driver,
   local-tag image, no pull), against a bare docker-SDK script that
   creates and starts the same containers one after the other; also the
   same containers started 4 at a time by the bare script (what the engine
   allows), the edge core with a launch parallelism of 1 and with the
   default 1 s probe interval, and where the edge core's time goes.
2. The same with N distinct images served by a local ``docker-registry``
   and removed locally before each run, so every start pulls for real.
3. The daemon's RSS after the drivers run and a few idle cycles, against
   the 50 MiB aim and the RSS of a bare ``import httpx, docker, paho``.
4. ``cyberwave-edge-core --version`` against ``python -c pass`` and
   ``python -c "import click"``, and what importing the daemon costs.

It never asserts a limit: it reports. It does not change product code.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from bench.report import (
    AIM_RSS_MIB,
    AIM_STARTUP_RATIO,
    AIM_VERSION_MS,
    BARE_PARALLEL,
    BASELINE,
    DEFAULT_PROBE,
    PARALLEL,
    SERIAL,
    Results,
    Variant,
    command_lines,
    memory_lines,
    startup_block,
    where_time_goes,
)
from bench.runs import EdgeTuning, baseline_run, edge_run
from bench.stack import ROOT, BenchError, Stack, child_env, open_stack, python
from bench.stats import MIB, Summary, parse_importtime, summarize

BARE_IMPORTS = "import httpx, docker, paho.mqtt.client"


def progress(message: str) -> None:
    """One line on stderr so a person sees the bench is alive."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def say(line: str = "") -> None:
    """One line of the report, on stdout at once."""
    print(line, flush=True)


# -- timed start-ups --------------------------------------------------------


def run_variant(
    stack: Stack,
    variant: Variant,
    count: int,
    *,
    images: Sequence[str] | None,
    idle_seconds: float,
    results: Results,
) -> str:
    """Run ``variant`` once for ``count`` twins; one line for the progress."""
    pull = images is not None
    if pull:
        stack.drop_registry_images()
    world = stack.new_world(count, images)
    if variant.bare:
        seconds = baseline_run(stack, world, pull=pull, parallel=variant.parallelism)
        results.add(variant, seconds, None)
        return f"{variant.title}: {seconds:.2f} s"
    tuning = EdgeTuning(
        parallelism=variant.parallelism, probe_interval=variant.probe_interval
    )
    sample = edge_run(stack, world, tuning, idle_seconds=idle_seconds)
    results.add(variant, sample.running, sample)
    return f"{variant.title}: {sample.running:.2f} s"


def time_startups(
    stack: Stack,
    count: int,
    reps: int,
    variants: Sequence[Variant],
    *,
    images: Sequence[str] | None = None,
    idle_seconds: float = 0.0,
) -> Results:
    """Run every variant ``reps`` times, interleaved, for ``count`` twins.

    The order rotates every repetition so a slow drift of the machine
    does not always hit the same variant. With ``images`` the local
    copies are removed before each run, so every run pulls. The last
    p=4 run idles ``idle_seconds`` and samples the RSS.
    """
    results = Results()
    for rep in range(reps):
        shift = rep % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            idle = idle_seconds if variant is PARALLEL and rep == reps - 1 else 0.0
            line = run_variant(
                stack,
                variant,
                count,
                images=images,
                idle_seconds=idle,
                results=results,
            )
            progress(f"N={count} run {rep + 1}/{reps}: {line}")
    return results


def print_startup(
    title: str, results: dict[int, Results], variants: Sequence[Variant]
) -> None:
    """Print one start-up section: per N the times and ratios, then the phases."""
    say()
    say(title)
    say(
        f"  aim: edge core p=4 at most {AIM_STARTUP_RATIO:.2f}x of the baseline "
        f"(process start to all containers running)"
    )
    for count, result in sorted(results.items()):
        for line in startup_block(count, result, variants):
            say(f"  {line}")
    for count, result in sorted(results.items()):
        say(f"  where the edge core's time goes, N={count}, p=4 (median):")
        for line in where_time_goes(result.samples.get(PARALLEL.key, [])):
            say(f"    {line}")


# -- memory -----------------------------------------------------------------


def bare_import_rss() -> int:
    """RSS of a Python process that only imported httpx, docker and paho."""
    code = f"{BARE_IMPORTS}; import sys; print('ready', flush=True); sys.stdin.read()"
    child = subprocess.Popen(
        [python(), "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=child_env(),
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != b"ready":
            raise BenchError("the bare import process did not start")
        rss: int = psutil.Process(child.pid).memory_info().rss
        return rss
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(10)


def print_memory(results: dict[int, Results], idle_seconds: float) -> None:
    """Print the idle RSS per N against the aim and the bare-import floor."""
    floor = bare_import_rss()
    say()
    say(
        f"3. Idle RSS of the daemon after the drivers run ({idle_seconds:g} s idle, "
        f"reconcile every 1 s); aim at most {AIM_RSS_MIB:.0f} MiB"
    )
    say(f"  floor: python -c '{BARE_IMPORTS}' = {floor / MIB:.1f} MiB")
    for line in memory_lines(results, floor):
        say(f"  {line}")


# -- command line and imports -----------------------------------------------


def time_commands(
    commands: dict[str, tuple[list[str], dict[str, str]]], runs: int
) -> dict[str, Summary]:
    """Wall time in ms of each command over ``runs`` interleaved runs."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, (argv, env) in commands.items():
            started = time.monotonic()
            subprocess.run(
                argv,
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
            )
            samples[name].append((time.monotonic() - started) * 1000)
    return {name: summarize(values) for name, values in samples.items()}


def print_version(runs: int) -> None:
    """Print --version against the interpreter baselines, and import costs."""
    env = child_env()
    command = str(Path(python()).parent / "cyberwave-edge-core")
    subject = "cyberwave-edge-core --version"
    timings = time_commands(
        {
            subject: ([command, "--version"], env),
            "python -c pass": ([python(), "-c", "pass"], env),
            'python -c "import click"': ([python(), "-c", "import click"], env),
        },
        runs,
    )
    say()
    say(
        f"4. {subject}: median of {runs} runs [min-max]; aim at most "
        f"{AIM_VERSION_MS:.0f} ms"
    )
    for line in command_lines(timings, subject):
        say(f"  {line}")
    trace = subprocess.run(
        [python(), "-X", "importtime", "-c", "from edge_core.cli.main import main"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    say("  slowest top-level imports of --version (python -X importtime):")
    for cost in parse_importtime(trace.stderr)[:4]:
        say(f"    {cost.module:<44} {cost.cumulative_us / 1000:.1f} ms")
    print_daemon_imports(max(3, runs // 3))


def print_daemon_imports(runs: int) -> None:
    """What importing the daemon costs, with and without cached bytecode."""
    code = "import edge_core.daemon"
    as_shell = dict(os.environ)
    setting = as_shell.get("PYTHONDONTWRITEBYTECODE", "")
    timings = time_commands(
        {
            "bytecode cached (as installed)": ([python(), "-c", code], child_env()),
            f"this shell (PYTHONDONTWRITEBYTECODE={setting or 'unset'})": (
                [python(), "-c", code],
                as_shell,
            ),
        },
        runs,
    )
    say(f"  python -c '{code}' (median of {runs}), part of every daemon start:")
    for name, summary in timings.items():
        say(f"    {name:<44} {summary.show('ms', digits=0)}")


# -- main -------------------------------------------------------------------


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/startup", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--counts", default="1,10,30", help="numbers of linked twins (default 1,10,30)"
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument(
        "--registry-count",
        type=int,
        default=10,
        help="twins (and distinct images) in the registry variant (default 10)",
    )
    parser.add_argument(
        "--no-registry", action="store_true", help="skip the registry variant"
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=3.0,
        help="idle time before the RSS sample (default 3)",
    )
    parser.add_argument(
        "--version-runs", type=int, default=15, help="runs of --version (default 15)"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the logs and config dirs (the path is printed)",
    )
    args = parser.parse_args(argv)
    try:
        args.counts = sorted({int(c) for c in args.counts.split(",") if c.strip()})
    except ValueError:
        parser.error(f"--counts must be numbers separated by commas: {args.counts}")
    if not args.counts or args.counts[0] < 1 or args.reps < 1:
        parser.error("--counts and --reps must be at least 1")
    if args.version_runs < 1 or args.registry_count < 1:
        parser.error("--version-runs and --registry-count must be at least 1")
    return args


def header(stack: Stack, reps: int) -> None:
    """What was measured where."""
    engine = stack.client.version().get("Version", "?")
    say("cyberwave-edge-core start-up benchmark")
    say(
        f"host: {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
        f"Docker engine {engine}, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    say(
        f"each figure: median of {reps} run(s) [min-max]; a ratio is the edge "
        f"core's median over the reference's, both measured in this run"
    )
    progress(
        f"run {stack.run_id}: every container carries "
        f"io.cyberwave.edge.fingerprint={stack.fingerprint_prefix}*"
    )


def run_sections(stack: Stack, args: argparse.Namespace) -> None:
    """Sections 1 to 3, which need the stack."""
    header(stack, args.reps)
    # The first start after a while pays for cold page caches in both the
    # engine and the interpreter; it is not counted.
    warm = Results()
    for variant in (BASELINE, PARALLEL):
        line = run_variant(
            stack, variant, 1, images=None, idle_seconds=0.0, results=warm
        )
        progress(f"warm-up, not counted: {line}")
    # The default probe interval is slow by design; one N shows its cost.
    probe_count = max((c for c in args.counts if c <= 10), default=args.counts[0])
    local: dict[int, Results] = {}
    for count in args.counts:
        variants = [BASELINE, BARE_PARALLEL, PARALLEL, SERIAL]
        if count == probe_count:
            variants.append(DEFAULT_PROBE)
        local[count] = time_startups(
            stack, count, args.reps, variants, idle_seconds=args.idle_seconds
        )
    print_startup(
        "1. Process start to all driver containers running "
        "(local-tag image, no pull; probe every 0.1 s unless stated)",
        local,
        [BASELINE, BARE_PARALLEL, PARALLEL, SERIAL, DEFAULT_PROBE],
    )
    if not args.no_registry:
        count = args.registry_count
        progress(f"pushing {count} distinct driver images to a local registry")
        images = stack.start_registry(count)
        # p=1 is left out here: section 1 shows it, and it is the slowest.
        variants = [BASELINE, BARE_PARALLEL, PARALLEL]
        pulled = {
            count: time_startups(stack, count, args.reps, variants, images=images)
        }
        print_startup(
            f"2. The same with {count} distinct images pulled from a local "
            f"docker-registry (the bare SDK pulls them first, as many at once "
            f"as it launches)",
            pulled,
            variants,
        )
    print_memory(local, args.idle_seconds)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every section and print the report; non-zero when a part failed."""
    args = _arguments(argv)
    started = time.monotonic()
    try:
        with open_stack(keep=args.keep) as stack:
            run_sections(stack, args)
        print_version(args.version_runs)
    except BenchError as exc:
        print(f"bench: FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; what it started was removed", file=sys.stderr)
        return 130
    say()
    say(f"total bench time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
