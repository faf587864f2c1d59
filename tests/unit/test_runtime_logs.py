"""Turning the engine's log frames into complete lines, without Docker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from edge_core.runtime.logs import LineBuffer, LogStream, split_timestamp

T1 = b"2024-05-06T07:08:09.000000001Z "
T2 = b"2024-05-06T07:08:09.500000000Z "
T3 = b"2024-05-06T07:08:10.250000000Z "


def lines_of(stream: LogStream) -> list[bytes]:
    return list(stream)


def test_line_buffer_joins_chunks_and_keeps_the_rest() -> None:
    """Lines split across chunks are joined; an unterminated tail waits."""
    buffer = LineBuffer()
    assert buffer.feed(b"hel") == []
    assert buffer.feed(b"lo\r\nwor") == [b"hello"]
    assert buffer.feed(b"ld\nx") == [b"world"]
    assert buffer.flush() == [b"x"]
    assert buffer.flush() == []


def test_split_timestamp_strips_the_engine_prefix() -> None:
    """The RFC 3339 prefix is parsed and removed from the line."""
    stamp, rest = split_timestamp(T2 + b"INFO ready\n")
    assert stamp == datetime(2024, 5, 6, 7, 8, 9, 500000, tzinfo=timezone.utc)
    assert rest == b"INFO ready\n"


def test_text_that_only_looks_like_a_date_is_kept() -> None:
    """A line without the engine's exact prefix is returned unchanged."""
    assert split_timestamp(b"2024-05-06 07:08:09 hello") == (
        None,
        b"2024-05-06 07:08:09 hello",
    )


def test_frames_become_lines_without_timestamps() -> None:
    """Frames, including a message split in two, yield whole lines."""
    frames = [
        T1 + b"first\n",
        T2 + b"second part one ",
        T2 + b"and two\n",
        T3 + b"tail",
    ]
    stream = LogStream(iter(frames), close=lambda: None, tty=False)
    assert lines_of(stream) == [b"first", b"second part one and two", b"tail"]
    assert stream.last_timestamp == datetime(
        2024, 5, 6, 7, 8, 10, 250000, tzinfo=timezone.utc
    )


def test_a_driver_timestamp_inside_a_frame_is_not_stripped() -> None:
    """Only the engine's prefix is removed, not a timestamp the driver printed."""
    frames = [T1 + T2 + b"driver printed this\n"]
    stream = LogStream(iter(frames), close=lambda: None, tty=False)
    assert lines_of(stream) == [T2 + b"driver printed this"]


def test_tty_bytes_are_split_into_lines_and_unstamped() -> None:
    """With a TTY the raw bytes are buffered and each line loses its stamp."""
    raw = T1 + b"one\r\n" + T2 + b"two\r\n"
    stream = LogStream((bytes([b]) for b in raw), close=lambda: None, tty=True)
    assert lines_of(stream) == [b"one", b"two"]


def test_since_drops_lines_up_to_and_including_that_moment() -> None:
    """Re-attaching with since=last_timestamp yields only later lines."""
    since = datetime(2024, 5, 6, 7, 8, 9, 500000, tzinfo=timezone.utc)
    frames = [T1 + b"old\n", T2 + b"seen\n", T3 + b"new\n"]
    stream = LogStream(iter(frames), close=lambda: None, tty=False, since=since)
    assert lines_of(stream) == [b"new"]


def test_stop_event_closes_a_blocked_stream() -> None:
    """Setting the stop event ends iteration even while no output arrives."""
    release = threading.Event()
    closed = threading.Event()

    def chunks() -> Iterator[bytes]:
        yield T1 + b"before\n"
        release.wait(10)
        if closed.is_set():
            raise ConnectionError("socket closed")
        yield T2 + b"never\n"

    def close() -> None:
        closed.set()
        release.set()

    stop = threading.Event()
    stream = LogStream(
        chunks(), close=close, tty=False, stop_event=stop, stop_poll=0.01
    )
    assert next(stream) == b"before"
    stop.set()
    assert list(stream) == []
    assert closed.is_set()


def test_exhausted_stream_closes_the_request() -> None:
    """Reading to the end closes the underlying request exactly once."""
    calls: list[int] = []
    stream = LogStream(iter([T1 + b"x\n"]), close=lambda: calls.append(1), tty=False)
    assert list(stream) == [b"x"]
    stream.close()
    assert calls == [1]


def test_line_buffer_cuts_lines_longer_than_its_limit() -> None:
    """A complete line past the limit is handed out in pieces of the limit."""
    buffer = LineBuffer(max_line_bytes=4)
    assert buffer.feed(b"abcdefghij\nxy\n") == [b"abcd", b"efgh", b"ij", b"xy"]


def test_unterminated_output_never_grows_past_the_limit() -> None:
    """Output without a line break is handed out as it outgrows the limit,
    so memory stays bounded whatever a container prints."""
    buffer = LineBuffer(max_line_bytes=4)
    pieces: list[bytes] = []
    for _ in range(5):
        pieces += buffer.feed(b"abc")
    assert pieces == [b"abca", b"bcab", b"cabc"]
    assert buffer.flush() == [b"abc"]


def test_a_progress_bar_on_a_tty_is_cut_into_bounded_lines() -> None:
    """Carriage-return redraws without a newline arrive in bounded pieces."""
    raw = T1 + b"".join(b"\r%3d%%" % n for n in range(100))
    stream = LogStream(iter([raw]), close=lambda: None, tty=True, max_line_bytes=64)
    lines = list(stream)
    assert all(len(line) <= 64 for line in lines)
    assert b"".join(lines).endswith(b" 99%")


def test_stream_knows_its_container() -> None:
    """The container id given by the adapter is kept on the stream."""
    stream = LogStream(iter([]), close=lambda: None, tty=False, container_id="abc")
    assert stream.container_id == "abc"
    assert LogStream(iter([]), close=lambda: None, tty=False).container_id is None


def test_resume_in_the_same_second_keeps_only_later_lines() -> None:
    """The engine resends the whole second of ``since``; only lines after the
    exact moment are kept, and the position moves to the last of them."""
    since = datetime(2024, 5, 6, 7, 8, 9, 0, tzinfo=timezone.utc)
    frames = [T1 + b"same second, earlier\n", T2 + b"same second, later\n"]
    stream = LogStream(
        iter(frames), close=lambda: None, tty=False, since=since.replace(microsecond=1)
    )
    assert lines_of(stream) == [b"same second, later"]
    assert stream.last_timestamp == since.replace(microsecond=500000)


def test_an_empty_resume_keeps_its_position() -> None:
    """A resumed stream that reads nothing still remembers where it started."""
    since = datetime(2024, 5, 6, 7, 8, 9, 500000, tzinfo=timezone.utc)
    stream = LogStream(iter([]), close=lambda: None, tty=False, since=since)
    assert lines_of(stream) == []
    assert stream.last_timestamp == since


def _tty_messages(content: bytes, size: int, *, end: bytes) -> bytes:
    """``content`` as a TTY log gives it: one message of at most ``size``
    bytes after another, each after a copy of the line's timestamp."""
    parts = [content[i : i + size] for i in range(0, len(content), size)]
    return b"".join(T1 + part for part in parts) + end


@pytest.mark.parametrize(
    "end", [b"\r\n" + T2 + b"after\r\n", b""], ids=["ended", "open"]
)
@pytest.mark.parametrize("read", [1, 7, 31, 50, 64, 200])
def test_a_long_tty_line_carries_none_of_its_timestamp_copies(
    end: bytes, read: int
) -> None:
    """However the stream is read, and wherever the pieces of the line are
    cut, no copy of the line's timestamp is left inside it: not one split
    between two reads, not one split by a cut, not in an unterminated rest."""
    content = bytes(range(97, 123)) * 20
    raw = _tty_messages(content, 50, end=end)
    chunks = [raw[i : i + read] for i in range(0, len(raw), read)]
    stream = LogStream(iter(chunks), close=lambda: None, tty=True, max_line_bytes=64)
    lines = list(stream)
    expected_tail = [b"after"] if end else []
    assert lines[len(lines) - len(expected_tail) :] == expected_tail
    pieces = lines[: len(lines) - len(expected_tail)]
    assert b"".join(pieces) == content
    assert all(len(piece) <= 64 for piece in pieces)
