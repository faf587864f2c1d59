"""Log format, secret redaction and library quieting."""

from __future__ import annotations

import io
import logging
import os
import re
import time
from collections.abc import Iterator

import pytest

from edge_core.logsetup import (
    ProblemLog,
    configure_logging,
    format_exception_line,
    redact,
)

LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} UTC \[(?P<level>[A-Z]+)\] "
    r"\[(?P<logger>[^\]]+)\] (?P<message>.*)$"
)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Leave the root logger and library loggers as they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    libraries = {
        n: logging.getLogger(n).level
        for n in ("httpx", "httpcore", "docker", "urllib3")
    }
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lib_level in libraries.items():
        logging.getLogger(name).setLevel(lib_level)


@pytest.fixture
def tokyo_time() -> Iterator[None]:
    """Run with the local time zone nine hours ahead of UTC."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "JST-9"
    time.tzset()
    yield
    if previous is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = previous
    time.tzset()


@pytest.mark.usefixtures("tokyo_time")
def test_line_format_is_utc_with_milliseconds() -> None:
    """A record is written as 'YYYY-MM-DD HH:MM:SS.mmm UTC [LEVEL] [logger] message' in
    UTC."""
    assert time.localtime(0).tm_hour == 9
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    record = logging.LogRecord(
        "edge_core.daemon", logging.WARNING, __file__, 1, "hello %s", ("world",), None
    )
    record.created = 86400 * 365 + 3723.0456
    record.msecs = 45.6

    logging.getLogger("edge_core.daemon").handle(record)

    assert stream.getvalue() == (
        "1971-01-01 01:02:03.045 UTC [WARNING] [edge_core.daemon] hello world\n"
    )


def test_level_filters_records() -> None:
    """Records below the configured level are not written."""
    stream = io.StringIO()
    configure_logging("warning", stream=stream)
    log = logging.getLogger("edge_core.test")

    log.info("quiet")
    log.error("loud")

    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    match = LINE.match(lines[0])
    assert match and match["level"] == "ERROR" and match["message"] == "loud"


def test_token_patterns_are_redacted_from_arguments() -> None:
    """cw_ tokens and bearer values passed as arguments are replaced by ***."""
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)

    logging.getLogger("edge_core.cloud").info(
        "calling with %s and header %r",
        "cw_AbC123-xyz_9",
        "Authorization: Bearer abc.def",
    )

    output = stream.getvalue()
    assert "cw_AbC123" not in output and "abc.def" not in output
    assert output.rstrip("\n").endswith(
        "calling with *** and header 'Authorization: Bearer ***'"
    )


def test_registered_secret_is_redacted_everywhere() -> None:
    """A registered secret is masked in the message and in exception text."""
    stream = io.StringIO()
    redactor = configure_logging("INFO", stream=stream)
    redactor.add_secret("plainpassword77")

    try:
        raise RuntimeError("broker refused plainpassword77 and cw_tokentoken")
    except RuntimeError:
        logging.getLogger("edge_core.cloud").exception(
            "login as %s failed", "plainpassword77"
        )

    output = stream.getvalue()
    assert "plainpassword77" not in output
    assert "cw_tokentoken" not in output
    assert "login as *** failed" in output
    assert "RuntimeError: broker refused *** and ***" in output
    assert "Traceback" in output


def test_short_secrets_are_ignored() -> None:
    """Secrets shorter than four characters are not registered, so text stays
    readable."""
    stream = io.StringIO()
    redactor = configure_logging("INFO", stream=stream)
    redactor.add_secret("ab")
    redactor.add_secret("")

    logging.getLogger("edge_core.x").info("about abc")

    assert stream.getvalue().rstrip("\n").endswith("about abc")


def test_redact_leaves_short_cw_words() -> None:
    """Text that only looks like a token prefix (fewer than 6 characters) is kept."""
    assert redact("see cw_abc and cwh_0123456789") == "see cw_abc and cwh_0123456789"
    assert redact("token=cw_abcdef") == "token=***"


def test_libraries_quiet_unless_debug() -> None:
    """httpx, httpcore, docker and urllib3 are held at WARNING except at DEBUG."""
    configure_logging("INFO", stream=io.StringIO())
    assert logging.getLogger("httpx").level == logging.WARNING
    assert logging.getLogger("urllib3").level == logging.WARNING

    configure_logging("DEBUG", stream=io.StringIO())
    assert logging.getLogger("docker").level == logging.NOTSET
    assert logging.getLogger("httpcore").getEffectiveLevel() == logging.DEBUG


def test_second_configuration_replaces_handler() -> None:
    """Configuring twice writes each record once, to the newest stream."""
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", stream=first)
    configure_logging("INFO", stream=second)

    logging.getLogger("edge_core.x").info("once")

    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1


def test_unknown_level_is_refused() -> None:
    """An unknown level name is a programming error and raises ValueError."""
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("LOUD", stream=io.StringIO())


def test_format_exception_line() -> None:
    """An exception becomes '<Type>: <message>' on one line, or just the type."""
    assert format_exception_line(ValueError("bad\n  value")) == "ValueError: bad value"
    assert format_exception_line(TimeoutError()) == "TimeoutError"


def test_signed_url_signatures_are_masked() -> None:
    """The signature and credential of a signed storage URL never reach a log."""
    from edge_core.logsetup import redact

    line = (
        "GET https://storage.example/w.pt?X-Goog-Algorithm=GOOG4"
        "&X-Goog-Credential=svc%2F2026&X-Goog-Signature=deadbeef01&alt=media"
    )
    masked = redact(line)
    assert "deadbeef01" not in masked
    assert "svc%2F2026" not in masked
    assert "X-Goog-Algorithm=GOOG4" in masked
    assert masked.endswith("&alt=media")


def test_problem_log_says_a_lasting_problem_once_and_its_end_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same problem reported every cycle is one WARNING then DEBUG; a
    changed message is a new WARNING; its end is one INFO line, and ending
    a problem that was never reported logs nothing."""
    logger = logging.getLogger("edge_core.test_problems")
    problems = ProblemLog(logger)

    with caplog.at_level(logging.DEBUG, logger="edge_core.test_problems"):
        for _ in range(3):
            problems.report("disk", "could not write %s: %s", "/c/a.json", "full")
        problems.report("disk", "could not write %s: %s", "/c/a.json", "read-only")
        assert problems.active("disk")
        assert problems.clear("disk", "wrote %s again", "/c/a.json")
        assert not problems.clear("disk", "wrote %s again", "/c/a.json")
        assert not problems.clear("never", "nothing to end")

    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "could not write /c/a.json: full"),
        ("DEBUG", "could not write /c/a.json: full"),
        ("DEBUG", "could not write /c/a.json: full"),
        ("WARNING", "could not write /c/a.json: read-only"),
        ("INFO", "wrote /c/a.json again"),
    ]
    assert not problems.active("disk")
