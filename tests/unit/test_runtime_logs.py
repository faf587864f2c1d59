"""Turning the engine's log frames into complete lines, without Docker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone

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
