"""Log output format and the one filter that keeps secrets out of the log.

The edge core logs to stderr (journald under systemd) in the format of
protocol.md 5.4: ``YYYY-MM-DD HH:MM:SS.mmm UTC [LEVEL] [logger] message``.
Tokens must never reach the log, whoever logs them and however (message,
arguments, exception text), so redaction happens once, in a filter on the
handler, instead of at every call site.

Nothing is configured at import: the entry point calls
``configure_logging`` once. This module does not decide the level; the
settings do.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from typing import TextIO

MASK = "***"
NOISY_LOGGERS = ("httpx", "httpcore", "docker", "urllib3")

_FORMAT = "%(asctime)s.%(msecs)03d UTC [%(levelname)s] [%(name)s] %(message)s"
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_MIN_SECRET_LENGTH = 4
_PATTERNS = (
    (re.compile(r"cw_[A-Za-z0-9_\-]{6,}"), MASK),
    (re.compile(r"(Bearer\s+)[^\s'\",]+", re.IGNORECASE), r"\g<1>" + MASK),
    # The signature and credential of signed storage URLs (model weights).
    (
        re.compile(
            r"([?&](?:X-Goog-Signature|X-Goog-Credential|X-Amz-Signature|"
            r"X-Amz-Credential|X-Amz-Security-Token|Signature|sig|token)=)[^&\s'\"]+",
            re.IGNORECASE,
        ),
        r"\g<1>" + MASK,
    ),
)


def redact(text: str) -> str:
    """``text`` with API tokens, bearer credentials and URL signatures masked."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Replaces registered secrets and token-shaped text with ``***``.

    Attached to a handler, it rewrites each record's final message
    (arguments merged in), its exception text and its stack text before
    the handler formats it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()

    def add_secret(self, secret: str | None) -> None:
        """Mask every later occurrence of ``secret`` (very short values are ignored)."""
        if not secret or len(secret.strip()) < _MIN_SECRET_LENGTH:
            return
        with self._lock:
            self._secrets = self._secrets | {secret.strip()}

    def redact(self, text: str) -> str:
        """``text`` with the registered secrets and token patterns masked."""
        # Longest first, so a secret containing another is masked whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return redact(text)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; never drops it."""
        record.msg = self.redact(_message(record))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError):
        # A broken format string must still be logged, not lost.
        return f"{record.msg!r} {record.args!r}"


class _UtcFormatter(logging.Formatter):
    """Formats record times in UTC, whatever the host's time zone."""

    def __init__(self, fmt: str, datefmt: str) -> None:
        super().__init__(fmt, datefmt)
        self.converter = time.gmtime


class _EdgeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure_logging`` installs; replaced on a second call."""


def configure_logging(level: str, *, stream: TextIO | None = None) -> RedactingFilter:
    """Send all logging to ``stream`` (stderr) at ``level``, redacted.

    Replaces a handler installed by an earlier call. The chatty HTTP and
    Docker libraries are held at WARNING unless ``level`` is DEBUG.
    Returns the filter so the caller can register the token with it.
    """
    numeric = logging.getLevelName(level.strip().upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")

    redactor = RedactingFilter()
    handler = _EdgeHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_UtcFormatter(_FORMAT, _DATE_FORMAT))
    handler.addFilter(redactor)

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _EdgeHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)

    library_level = logging.NOTSET if numeric <= logging.DEBUG else logging.WARNING
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(library_level)
    return redactor


def format_exception_line(exc: BaseException) -> str:
    """``<Type>: <message>`` on one line (just the type when there is no message)."""
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


class ProblemLog:
    """Says each lasting problem once, not once per cycle.

    ``report`` logs at ``level`` (WARNING) when a problem under ``key``
    starts or its message changes, and at DEBUG while it stays the same;
    ``clear`` logs one INFO line when a reported problem is over. Keys are
    the caller's (a file path, a twin uuid and an action). Thread-safe.
    """

    def __init__(self, logger: logging.Logger, *, level: int = logging.WARNING) -> None:
        self._logger = logger
        self._level = level
        self._active: dict[str, str] = {}
        self._lock = threading.Lock()

    def report(self, key: str, message: str, *args: object) -> None:
        text = message % args if args else message
        with self._lock:
            repeated = self._active.get(key) == text
            self._active[key] = text
        self._logger.log(logging.DEBUG if repeated else self._level, "%s", text)

    def clear(self, key: str, message: str | None = None, *args: object) -> bool:
        """End the problem under ``key``; True (``message`` logged) if one was on."""
        with self._lock:
            was_on = self._active.pop(key, None) is not None
        if was_on and message is not None:
            self._logger.info(message, *args)
        return was_on

    def active(self, key: str) -> bool:
        with self._lock:
            return key in self._active

    def active_messages(self) -> tuple[str, ...]:
        """The message of every problem still on, oldest first."""
        with self._lock:
            return tuple(self._active.values())
