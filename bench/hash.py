"""The model-cache benchmark: what ``ensure_model`` costs on a large file.

    bench/hash [--size 2G] [--dir /var/tmp/cw-bench-hash] [--reps 3]
               [--parts hash,memory,download] [--keep]

A warm ``ensure_model`` of a cached model is one SHA-256 of the whole
weight file (there is no shortcut: that is how bit-rot is caught), so its
cost is compared, in the same run on the same file, with the fastest
hashers on the machine. Every figure is printed with the reference it is
measured against, as a ratio:

1. ``ensure_model`` on a warm, pre-staged file against
   ``openssl dgst -sha256`` and ``sha256sum`` of the same file (page cache
   warm for all). Aim: at most 1.15x openssl.
2. Why: the same read-and-hash loop with a page-aligned ``mmap`` buffer
   and with a ``bytearray`` buffer (which ``malloc`` places 16 bytes into
   a page), and hashlib against ``openssl speed`` on memory alone, which
   is the ceiling the CPU's SHA instructions allow.
3. Peak RSS growth while a fresh process hashes the file, for the full
   file and for one sixteenth of it. Aim: independent of the file size.
4. Download throughput of the cache's ``Downloader`` (hash while
   streaming, fsync at the end) from a loopback server process against
   ``curl`` of the same URL: alone, followed by a ``sync`` of its file,
   and piped through ``tee`` into ``openssl dgst`` (the same work).

The data file (random bytes) is created once and kept in ``--dir`` for
later runs. It never asserts a limit: it reports.
"""

from __future__ import annotations

import argparse
import hashlib
import mmap
import os
import platform
import shlex
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_core.models import ModelManager
from edge_core.models.download import Downloader, DownloadOptions
from edge_core.models.hashing import BUFFER_SIZE, sha256_file

ROOT = Path(__file__).resolve().parent.parent

GIB = 1 << 30
MIB = 1 << 20
AIM_OPENSSL_RATIO = 1.15
MODEL_ID = "bench-model"


@dataclass(frozen=True)
class Timing:
    """Median and spread of repeated wall-clock seconds."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Timing:
        return cls(statistics.median(values), min(values), max(values))

    def show(self) -> str:
        return f"{self.median:7.3f} s [{self.low:.3f}-{self.high:.3f}]"


def say(line: str = "") -> None:
    """One line of the report."""
    print(line, flush=True)


def progress(message: str) -> None:
    """A sign of life on stderr."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    """``2G``, ``512M``, ``64K`` or a byte count."""
    units = {"K": 1 << 10, "M": MIB, "G": GIB}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def timed_together(
    actions: dict[str, Callable[[], object]],
    reps: int,
    *,
    before_each: Callable[[], object] | None = None,
) -> dict[str, Timing]:
    """Time each action ``reps`` times, taking turns.

    Round-robin order means a change in the machine's load during the run
    hits every action alike, so their ratios stay fair.
    """
    values: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(reps):
        for name, action in actions.items():
            if before_each is not None:
                before_each()
            started = time.perf_counter()
            action()
            values[name].append(time.perf_counter() - started)
    return {name: Timing.of(times) for name, times in values.items()}


def run_quiet(command: Sequence[str]) -> None:
    """Run ``command``, failing loudly if it fails."""
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def rate(size: int, seconds: float) -> str:
    """``1.23 GiB/s``."""
    return f"{size / seconds / GIB:5.2f} GiB/s"


def ratio(value: float, reference: float) -> str:
    """``0.98x``."""
    return f"{value / reference:.2f}x" if reference > 0 else "n/a"


# -- the data ------------------------------------------------------------------


def data_file(directory: Path, size: int) -> Path:
    """A file of ``size`` random bytes in ``directory``, created once."""
    path = directory / f"data-{size}.bin"
    if path.is_file() and path.stat().st_size == size:
        return path
    progress(f"creating {size / GIB:.2f} GiB of random data in {path} (once)")
    temp = path.with_suffix(".tmp")
    with open(temp, "wb") as handle:
        written = 0
        while written < size:
            piece = os.urandom(min(16 * MIB, size - written))
            handle.write(piece)
            written += len(piece)
    os.replace(temp, path)
    return path


def stage(data: Path, cache: Path) -> Path:
    """Hard-link ``data`` into the cache as a pre-staged model; the weight path."""
    model_dir = cache / MODEL_ID
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir.mkdir(parents=True)
    weight = model_dir / f"{MODEL_ID}.pt"
    os.link(data, weight)
    return weight


# -- 1 and 2: hashing ----------------------------------------------------------


def hash_loop(path: Path, buffer: memoryview) -> str:
    """The cache's read-and-hash loop with a caller-supplied buffer."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            digest.update(buffer[:count])
    return digest.hexdigest()


def aligned_loop(path: Path) -> str:
    region = mmap.mmap(-1, BUFFER_SIZE)
    view = memoryview(region)
    try:
        return hash_loop(path, view)
    finally:
        view.release()
        region.close()


def bytearray_loop(path: Path) -> str:
    return hash_loop(path, memoryview(bytearray(BUFFER_SIZE)))


def hashlib_memory_rate() -> float:
    """Bytes per second of hashlib over 512 MiB already in memory (best of 3)."""
    block = os.urandom(MIB)
    best = float("inf")
    for _ in range(3):
        digest = hashlib.sha256()
        started = time.perf_counter()
        for _ in range(512):
            digest.update(block)
        best = min(best, time.perf_counter() - started)
    return 512 * MIB / best


def openssl_memory_rate() -> float | None:
    """Bytes per second of ``openssl speed -evp sha256`` on 1 MiB blocks."""
    done = subprocess.run(
        ["openssl", "speed", "-seconds", "2", "-bytes", str(MIB), "-evp", "sha256"],
        capture_output=True,
        text=True,
    )
    for line in done.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "sha256" and parts[-1].endswith("k"):
            return float(parts[-1][:-1]) * 1000
    return None


def hashing_section(data: Path, cache: Path, reps: int) -> None:
    size = data.stat().st_size
    weight = stage(data, cache)
    manager = ModelManager(cache)
    progress("registering the pre-staged file (first hash, warms the page cache)")
    manager.ensure_model(MODEL_ID)

    timings = timed_together(
        {
            "ensure": lambda: manager.ensure_model(MODEL_ID),
            "openssl": lambda: run_quiet(["openssl", "dgst", "-sha256", str(weight)]),
            "sha256sum": lambda: run_quiet(["sha256sum", str(weight)]),
            "aligned": lambda: aligned_loop(weight),
            "unaligned": lambda: bytearray_loop(weight),
        },
        reps,
    )
    ensure, openssl, sha256sum = (
        timings["ensure"],
        timings["openssl"],
        timings["sha256sum"],
    )
    aligned, unaligned = timings["aligned"], timings["unaligned"]

    met = ensure.median <= AIM_OPENSSL_RATIO * openssl.median
    say("1. warm hash of the whole file (page cache warm)")
    row(
        "ensure_model (pre-staged)",
        ensure,
        size,
        f"{ratio(ensure.median, openssl.median)} openssl",
        f"(aim <= {AIM_OPENSSL_RATIO}x: {'met' if met else 'NOT met'})",
    )
    row("openssl dgst -sha256", openssl, size)
    row(
        "sha256sum",
        sha256sum,
        size,
        f"ensure_model takes {ratio(ensure.median, sha256sum.median)} of it",
    )
    say("2. where the time goes")
    row("loop, page-aligned mmap buf", aligned, size)
    row(
        "loop, bytearray buf (+16 B)",
        unaligned,
        size,
        f"{ratio(unaligned.median, aligned.median)} of aligned",
    )
    memory = hashlib_memory_rate()
    ceiling = openssl_memory_rate()
    ceiling_text = f"{ceiling / GIB:.2f} GiB/s" if ceiling else "n/a"
    say(
        f"   SHA-256 on memory: hashlib {memory / GIB:.2f} GiB/s, "
        f"openssl speed {ceiling_text} (the ceiling of this CPU)"
    )
    say(
        f"   ensure_model's fixed cost (lock, sidecar, manifest, stat) on a "
        f"1-byte model: {fixed_cost_ms(cache):.2f} ms per call"
    )


def fixed_cost_ms(cache: Path) -> float:
    """Milliseconds per warm ensure_model of a 1-byte pre-staged model."""
    model_dir = cache / "tiny"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "tiny.pt").write_bytes(b"x")
    manager = ModelManager(cache)
    manager.ensure_model("tiny")
    started = time.perf_counter()
    for _ in range(200):
        manager.ensure_model("tiny")
    return (time.perf_counter() - started) / 200 * 1000


def row(label: str, timing: Timing, size: int, *notes: str) -> None:
    """One timed line: label, time, throughput, then any notes."""
    say(
        f"   {label:30s}{timing.show()}  {rate(size, timing.median)}  "
        + "  ".join(notes)
    )


# -- 3: memory -----------------------------------------------------------------

_RSS_CHILD = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    import psutil
    from edge_core.models import ModelManager

    manager = ModelManager(Path(sys.argv[1]))
    me = psutil.Process()
    before = me.memory_info().rss
    peak = before
    done = threading.Event()

    def sample():
        global peak
        while not done.is_set():
            peak = max(peak, me.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    manager.ensure_model(sys.argv[2])
    done.set()
    sampler.join()
    print(before, max(peak, me.memory_info().rss))
    """
)


def rss_growth(cache: Path) -> tuple[int, int]:
    """(RSS before, peak RSS during) a fresh process's ensure_model."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, str(cache), MODEL_ID],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    before, peak = (int(value) for value in done.stdout.split())
    return before, peak


def memory_section(data: Path, work: Path) -> None:
    size = data.stat().st_size
    small = work / "small-data.bin"
    with open(data, "rb") as source, open(small, "wb") as target:
        target.write(source.read(size // 16))
    results = []
    for label, path in (("whole file", data), ("1/16 of it", small)):
        cache = work / f"rss-{label.split()[0].replace('/', '_')}" / "models"
        shutil.rmtree(cache.parent, ignore_errors=True)
        stage(path, cache)
        ModelManager(cache).ensure_model(MODEL_ID)
        before, peak = rss_growth(cache)
        results.append((label, path.stat().st_size, before, peak))
    say("3. peak RSS of a fresh process during ensure_model (sampled every 5 ms)")
    for label, file_size, before, peak in results:
        growth = (peak - before) / MIB
        say(
            f"   {label:11s} {file_size / MIB:9.1f} MiB: RSS {before / MIB:6.1f} MiB "
            f"before, peak {peak / MIB:6.1f} MiB, growth {growth:5.2f} MiB"
        )
    growths = [peak - before for _, _, before, peak in results]
    same = abs(growths[0] - growths[1]) <= 2 * MIB
    say(
        "   growth independent of file size (within 2 MiB): "
        + ("yes" if same else "NO")
    )


# -- 4: download ---------------------------------------------------------------


_SERVER_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from tests.support.weights_server import WeightsServer

    server = WeightsServer().start()
    server.add("weights.pt", Path(sys.argv[1]))
    print(server.url("weights.pt"), flush=True)
    sys.stdin.read()
    server.stop()
    """
)


def download_section(data: Path, target_root: Path, reps: int) -> None:
    size = data.stat().st_size
    target = Path(tempfile.mkdtemp(prefix="cw-bench-download-", dir=target_root))
    expected = sha256_file(data).sha256
    # The server runs in its own process, as a real one would: sharing this
    # interpreter would make the downloader compete with it for the GIL.
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER_CHILD, str(data)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert server.stdout is not None and server.stdin is not None
    url = server.stdout.readline().strip()
    downloader = Downloader(base_url=None, options=DownloadOptions())

    def ours() -> None:
        fetched = downloader.fetch(
            url,
            directory=target,
            expected_sha256=expected,
            model_id=MODEL_ID,
            source="download_url",
        )
        fetched.path.unlink()

    def curl(sync: bool) -> Callable[[], None]:
        def run() -> None:
            out = target / "curl.bin"
            run_quiet(["curl", "-sSf", "-o", str(out), url])
            if sync:
                run_quiet(["sync", str(out)])
            out.unlink()

        return run

    def curl_hashing() -> None:
        out = target / "curl.bin"
        pipeline = (
            f"set -o pipefail; curl -sS --fail {shlex.quote(url)} "
            f"| tee {shlex.quote(str(out))} | openssl dgst -sha256 >/dev/null"
        )
        run_quiet(["bash", "-c", pipeline])
        out.unlink()

    try:
        timings = timed_together(
            {
                "ours": ours,
                "curl": curl(False),
                "synced": curl(True),
                "hashing": curl_hashing,
            },
            reps,
            before_each=lambda: run_quiet(["sync"]),
        )
    finally:
        downloader.close()
        server.stdin.close()
        server.wait(30)
        shutil.rmtree(target, ignore_errors=True)
    mine, plain, synced = timings["ours"], timings["curl"], timings["synced"]
    hashing = timings["hashing"]
    say(f"4. download from a loopback server process into {target_root}")
    row(
        "Downloader.fetch (hash+fsync)",
        mine,
        size,
        f"{ratio(mine.median, plain.median)} curl,",
        f"{ratio(mine.median, synced.median)} curl+sync,",
        f"{ratio(mine.median, hashing.median)} curl|tee|openssl",
    )
    row("curl -o", plain, size)
    row("curl -o && sync FILE", synced, size)
    row("curl | tee FILE | openssl dgst", hashing, size, "(hashes while it writes)")


# -- main ----------------------------------------------------------------------


def sha_instructions() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    return "yes" if " sha_ni" in flags or " sha2" in flags else "no"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/hash", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--size", default="2G", help="data file size (default 2G)")
    parser.add_argument(
        "--dir",
        default="/var/tmp/cw-bench-hash",
        help="where the data file is kept between runs",
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions per timing")
    parser.add_argument(
        "--parts",
        default="hash,memory,download",
        help="comma-separated parts to run: hash (1 and 2), memory (3), download (4)",
    )
    parser.add_argument(
        "--download-dir",
        default=None,
        help="where part 4 writes (default: --dir; /dev/shm leaves the disk out)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)

    size = parse_size(args.size)
    keep_dir = Path(args.dir)
    keep_dir.mkdir(parents=True, exist_ok=True)
    data = data_file(keep_dir, size)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=keep_dir))
    say(
        f"bench/hash: {size / GIB:.2f} GiB file, {args.reps} reps, "
        f"Python {platform.python_version()}, {ssl.OPENSSL_VERSION}, "
        f"{platform.machine()} (SHA instructions: {sha_instructions()}), "
        f"{os.cpu_count()} CPUs"
    )
    parts = {part.strip() for part in args.parts.split(",")}
    try:
        if "hash" in parts:
            hashing_section(data, work / "models", args.reps)
        if "memory" in parts:
            memory_section(data, work)
        if "download" in parts:
            download_section(data, Path(args.download_dir or work), args.reps)
    finally:
        if args.keep:
            progress(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
