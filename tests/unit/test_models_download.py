"""Weight downloads against a real loopback HTTP server that misbehaves on cue."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_core.models.download import Downloader, DownloadOptions, partial_paths
from edge_core.models.errors import DownloadError
from edge_core.models.progress import Phase, Progress
from tests.support.weights_server import WeightsServer

TOKEN = "cw_download_test_token"
DATA = os.urandom(700_000)
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def server() -> Iterator[WeightsServer]:
    """A running weights server, stopped at teardown."""
    with WeightsServer() as running:
        yield running


@pytest.fixture
def sleeps() -> list[float]:
    """Every backoff delay the downloader asked for."""
    return []


@pytest.fixture
def make_downloader(
    sleeps: list[float],
) -> Iterator[Callable[..., Downloader]]:
    """Build downloaders with fast timings; closed at teardown."""
    made: list[Downloader] = []

    def build(
        base_url: str | None = "http://cyberwave.invalid", **options: object
    ) -> Downloader:
        settings: dict[str, object] = {"timeout": 2.0}
        settings.update(options)
        downloader = Downloader(
            base_url=base_url,
            token=lambda: TOKEN,
            options=DownloadOptions(**settings),  # type: ignore[arg-type]
            sleep=sleeps.append,
        )
        made.append(downloader)
        return downloader

    yield build
    for downloader in made:
        downloader.close()


def _fetch(
    downloader: Downloader,
    url: str,
    directory: Path,
    expected: str | None = SHA,
    events: list[Progress] | None = None,
) -> Path:
    fetched = downloader.fetch(
        url,
        directory=directory,
        expected_sha256=expected,
        model_id="m",
        source="download_url",
        on_progress=None if events is None else events.append,
    )
    assert fetched.sha256 == hashlib.sha256(fetched.path.read_bytes()).hexdigest()
    return fetched.path


def test_download_is_verified_and_left_in_a_partial_file(
    server: WeightsServer, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    """A good download ends as a fsynced ``.dl_*.part`` file with the right bytes."""
    server.add("w.pt", DATA)

    path = _fetch(make_downloader(), server.url("w.pt"), tmp_path)

    assert path.name.startswith(".dl_") and path.name.endswith(".part")
    assert path.read_bytes() == DATA
    assert not partial_paths(tmp_path, server.url("w.pt"))[1].exists()


def test_authorization_goes_only_to_the_base_url(
    server: WeightsServer, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    """The token is sent to URLs under the base URL and never to any other host."""
    server.add("api/w.pt", DATA)
    server.add("bucket/w.pt", DATA)

    _fetch(
        make_downloader(base_url=server.url("api")), server.url("api/w.pt"), tmp_path
    )
    _fetch(
        make_downloader(base_url=server.url("api")),
        server.url("bucket/w.pt", "X-Goog-Signature=s"),
        tmp_path,
    )

    assert server.requests("api/w.pt")[0].header("Authorization") == f"Bearer {TOKEN}"
    assert server.requests("bucket/w.pt")[0].header("Authorization") is None


def test_a_look_alike_host_never_gets_the_token(
    make_downloader: Callable[..., Downloader],
) -> None:
    """``https://api.cyberwave.com.evil`` does not start with the base URL + ``/``."""
    downloader = make_downloader(base_url="https://api.cyberwave.com/")

    assert downloader.sends_authorization("https://api.cyberwave.com/api/v1/x")
    assert not downloader.sends_authorization("https://api.cyberwave.com.evil/x")
    assert not downloader.sends_authorization("https://storage.googleapis.com/b/o")


def test_redirect_to_storage_drops_the_authorization_header(
    server: WeightsServer, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    """A base-URL download redirected to a signed URL sends it no token."""
    server.add("api/weights", DATA, redirect_to="bucket/w.pt")
    server.add("bucket/w.pt", DATA)
    downloader = make_downloader(base_url=server.url("api"))

    _fetch(downloader, server.url("api/weights"), tmp_path)

    assert server.requests("api/weights")[0].header("Authorization") is not None
    assert server.requests("bucket/w.pt")[0].header("Authorization") is None


def test_wrong_checksum_deletes_the_file_and_is_not_retried(
    server: WeightsServer,
    make_downloader: Callable[..., Downloader],
    tmp_path: Path,
    sleeps: list[float],
) -> None:
    """A finished download with a wrong SHA-256 is deleted and reported at once."""
    server.add("w.pt", DATA)

    with pytest.raises(DownloadError, match="not the catalog's") as caught:
        _fetch(make_downloader(), server.url("w.pt"), tmp_path, expected="0" * 64)

    assert not caught.value.retryable
    assert list(tmp_path.iterdir()) == []
    assert len(server.requests("w.pt")) == 1
    assert sleeps == []


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_not_retried(
    server: WeightsServer,
    make_downloader: Callable[..., Downloader],
    tmp_path: Path,
    status: int,
) -> None:
    """An expired signature or missing access fails after one request."""
    server.add("w.pt", DATA, status=status)

    with pytest.raises(DownloadError, match=f"HTTP {status}") as caught:
        _fetch(make_downloader(), server.url("w.pt"), tmp_path)

    assert caught.value.status == status
    assert len(server.requests("w.pt")) == 1


@pytest.mark.parametrize("status", [404, 500, 503])
def test_other_failures_get_three_attempts_with_2_then_4_s_backoff(
    server: WeightsServer,
    make_downloader: Callable[..., Downloader],
    tmp_path: Path,
    sleeps: list[float],
    status: int,
) -> None:
    """Three attempts, sleeping 2 s and then 4 s between them (protocol.md 1.3)."""
    server.add("w.pt", DATA, status=status)

    with pytest.raises(DownloadError, match=f"HTTP {status}"):
        _fetch(make_downloader(backoff=(2.0, 4.0)), server.url("w.pt"), tmp_path)

    assert len(server.requests("w.pt")) == 3
    assert sleeps == [2.0, 4.0]


def test_a_temporary_500_is_overcome_by_a_retry(
    server: WeightsServer,
    make_downloader: Callable[..., Downloader],
    tmp_path: Path,
    sleeps: list[float],
) -> None:
    """One 500 costs one backoff; the second attempt succeeds."""
    server.add("w.pt", DATA, status=500, status_times=1)

    path = _fetch(make_downloader(), server.url("w.pt"), tmp_path)

    assert path.read_bytes() == DATA
    assert sleeps == [2.0]


def test_a_cut_connection_resumes_with_a_range_request(
    server: WeightsServer, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    """After a cut the retry asks only for the missing bytes, with If-Range."""
    blob = server.add("w.pt", DATA, cut_after=300_000, cut_times=1)

    path = _fetch(make_downloader(), server.url("w.pt"), tmp_path)

    assert path.read_bytes() == DATA
    first, second = server.requests("w.pt")
    assert first.header("Range") is None
    match = re.fullmatch(r"bytes=(\d+)-", second.header("Range") or "")
    assert match is not None
    kept = int(match.group(1))
    assert 0 < kept <= 300_000
    assert second.header("If-Range") == blob.etag
    assert second.status == 206
    assert second.sent == len(DATA) - kept


def test_a_server_that_ignores_ranges_restarts_from_zero(
    server: WeightsServer, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    """A 200 answer to a range request replaces the partial bytes, not appends."""
    server.add("w.pt", DATA, cut_after=200_000, cut_times=1, ranges=False)

    path = _fetch(make_downloader(), server.url("w.pt"), tmp_path)

    assert path.read_bytes() == DATA
    assert server.requests("w.pt")[1].status == 200


def test_a_changed_object_is_fetched_whole_not_spliced(
    server: WeightsServer, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    """If-Range with an old ETag gets the whole new object, never a mix."""
    url = server.url("w.pt")
    server.add("w.pt", DATA, cut_after=300_000, cut_times=1)
    with pytest.raises(DownloadError):
        _fetch(make_downloader(attempts=1), url, tmp_path)
    assert 0 < partial_paths(tmp_path, url)[0].stat().st_size <= 300_000

    new_data = os.urandom(500_000)
    server.add("w.pt", new_data)
    path = _fetch(
        make_downloader(), url, tmp_path, expected=hashlib.sha256(new_data).hexdigest()
    )

    assert path.read_bytes() == new_data
    assert server.requests("w.pt")[-1].status == 200


def test_a_complete_partial_is_finished_from_a_416(
    server: WeightsServer, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    """A partial that already holds every byte is verified, not downloaded again."""
    url = server.url("w.pt")
    server.add("w.pt", DATA)
    part, state = partial_paths(tmp_path, url)
    part.write_bytes(DATA)
    state.write_text('{"validator": null}')

    path = _fetch(make_downloader(), url, tmp_path)

    assert path.read_bytes() == DATA
    assert server.requests("w.pt")[0].status == 416


def test_a_rotten_partial_is_downloaded_again_from_the_start(
    server: WeightsServer, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    """A resumed file that fails its checksum is fetched again whole, once."""
    url = server.url("w.pt")
    blob = server.add("w.pt", DATA)
    part, state = partial_paths(tmp_path, url)
    part.write_bytes(os.urandom(100_000))
    state.write_text(json.dumps({"validator": blob.etag}))

    path = _fetch(make_downloader(), url, tmp_path)

    assert path.read_bytes() == DATA
    first, second = server.requests("w.pt")
    assert first.header("Range") == "bytes=100000-"
    assert second.header("Range") is None


def test_a_partial_without_validator_or_checksum_is_not_resumed(
    server: WeightsServer, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    """With nothing to catch a changed object, a partial is discarded, not resumed."""
    url = server.url("w.pt")
    server.add("w.pt", DATA, etag=None)
    partial_paths(tmp_path, url)[0].write_bytes(b"stale bytes")

    path = _fetch(make_downloader(), url, tmp_path, expected=None)

    assert path.read_bytes() == DATA
    assert server.requests("w.pt")[0].header("Range") is None


def test_chunked_body_cut_without_length_is_detected(
    server: WeightsServer, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    """A chunked body cut short is an error, never a short file accepted."""
    server.add("w.pt", DATA, chunked=True, cut_after=100_000)

    with pytest.raises(DownloadError):
        _fetch(make_downloader(attempts=2), server.url("w.pt"), tmp_path, expected=None)

    assert len(server.requests("w.pt")) == 2


def test_a_hanging_server_times_out_and_retries(
    server: WeightsServer,
    make_downloader: Callable[..., Downloader],
    tmp_path: Path,
    sleeps: list[float],
) -> None:
    """A server that never answers costs one timeout per attempt."""
    server.add("w.pt", DATA, hang=True)

    with pytest.raises(DownloadError, match="timed out"):
        _fetch(make_downloader(timeout=0.3, attempts=2), server.url("w.pt"), tmp_path)

    assert len(sleeps) == 1


def test_not_enough_free_space_is_refused_before_writing(
    server: WeightsServer, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    """A Content-Length larger than the free space fails at once and is not retried."""
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as handle:
        # Sparse: larger than the free space, yet it occupies nothing.
        handle.truncate(shutil.disk_usage(tmp_path).free + (1 << 30))
    server.add("w.pt", huge)

    with pytest.raises(DownloadError, match="free some space") as caught:
        _fetch(make_downloader(), server.url("w.pt"), tmp_path, expected=None)

    assert not caught.value.retryable
    assert len(server.requests("w.pt")) == 1


def test_progress_events_carry_bytes_total_and_rate(
    server: WeightsServer, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    """Events grow to the total and the last one is marked finished."""
    server.add("w.pt", DATA)
    events: list[Progress] = []

    _fetch(
        make_downloader(progress_interval=0.0),
        server.url("w.pt"),
        tmp_path,
        events=events,
    )

    assert events[-1].finished and events[-1].done == len(DATA)
    assert all(e.total == len(DATA) and e.phase is Phase.DOWNLOAD for e in events)
    assert [e.done for e in events] == sorted(e.done for e in events)
    assert events[-1].rate > 0


def test_signed_query_strings_never_reach_the_log(
    server: WeightsServer,
    make_downloader: Callable[..., Downloader],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Retries log the URL without its query, where the signature lives."""
    caplog.set_level(logging.DEBUG)
    server.add("w.pt", DATA, status=500)

    with pytest.raises(DownloadError) as caught:
        _fetch(
            make_downloader(), server.url("w.pt", "X-Goog-Signature=SECRET"), tmp_path
        )

    ours = [r.getMessage() for r in caplog.records if r.name.startswith("edge_core")]
    assert any("/w.pt" in line for line in ours)
    assert not any("SECRET" in line for line in ours)
    assert "SECRET" not in str(caught.value)
