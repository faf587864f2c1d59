"""Checking and splitting a driver's raw docker run params."""

from __future__ import annotations

import pytest

from edge_core.errors import DriverSpecError
from edge_core.model.params import params_source, parse_driver_params

SOURCE = params_source("7f3c2a10-5e4b", "default")


def parse(tokens: object):  # type: ignore[no-untyped-def]
    return parse_driver_params(tokens, source=SOURCE)


def test_empty_or_missing_params() -> None:
    """No params give no options and no env."""
    values: tuple[object, ...] = (None, [])
    for value in values:
        params = parse(value)
        assert params.options == {}
        assert params.env == {}


def test_exact_e_pairs_are_env_pairs() -> None:
    """Exact '-e' 'K=V' tokens become env pairs, split at the first '='."""
    params = parse(["-e", "A=1", "-e", "URL=tcp://h:1?x=y", "-e", "EMPTY="])
    assert params.env_pairs == {"A": "1", "URL": "tcp://h:1?x=y", "EMPTY": ""}
    assert params.env_passthrough == {}
    assert "--env" not in params.options


def test_other_env_forms_pass_through() -> None:
    """--env K=V, --env=K=V and -e=K=V are kept apart as passed-through env."""
    params = parse(["--env", "A=1", "--env=B=2", "-e=C=3"])
    assert params.env_passthrough == {"A": "1", "B": "2", "C": "3"}
    assert params.env_pairs == {}


def test_exact_pair_wins_a_tie_with_passthrough() -> None:
    """When both forms set a key, the exact -e pair wins in the combined env."""
    params = parse(["-e", "A=pair", "--env", "A=long"])
    assert params.env == {"A": "pair"}


def test_other_flags_are_normalized() -> None:
    """Flags become long names with values, set-like ones sorted."""
    params = parse(
        [
            "--device",
            "/dev/ttyUSB1",
            "-v",
            "/b:/b",
            "--device=/dev/ttyACM0",
            "-v",
            "/a:/a",
            "--net",
            "bridge",
            "--privileged",
            "-l",
            "team=robots",
        ]
    )
    assert params.options == {
        "--device": ["/dev/ttyACM0", "/dev/ttyUSB1"],
        "--volume": ["/a:/a", "/b:/b"],
        "--network": ["bridge"],
        "--privileged": True,
        "--label": {"team": "robots"},
    }
    assert params.has("--network")
    assert not params.has("--log-driver")


def test_switch_with_inline_value() -> None:
    """--privileged=false leaves the flag off; =true turns it on."""
    assert "--privileged" not in parse(["--privileged=false"]).options
    assert parse(["--privileged=true"]).options["--privileged"] is True


@pytest.mark.parametrize(
    ("tokens", "fragment"),
    [
        ("--device /dev/x", "must be a list"),
        ({"-e": "A=1"}, "must be a list"),
        (["--device", 3], "element 1"),
        (["-e", None], "element 1"),
        (["-e"], "not KEY=value"),
        (["-e", "NOVALUE"], "not KEY=value"),
        (["-e", "=value"], "not KEY=value"),
        (["-e", "-v"], "not KEY=value"),
        (["--env", "NOVALUE"], "not KEY=value"),
        (["/dev/ttyACM0"], "element 0"),
        (["--device"], "has no value"),
        (["--no-such-flag", "x"], "not a supported"),
        (["--name", "mine"], "set by the edge core"),
        (["--privileged=maybe"], "not true or false"),
    ],
)
def test_malformed_params_are_refused(tokens: object, fragment: str) -> None:
    """Malformed params raise DriverSpecError naming the twin, profile and element."""
    with pytest.raises(DriverSpecError) as caught:
        parse(tokens)
    message = str(caught.value)
    assert message.startswith("twin 7f3c2a10-5e4b driver profile 'default' params: ")
    assert fragment in message


def test_error_names_the_bad_element_and_fix() -> None:
    """The message for a bad -e quotes the element and says how to write it."""
    with pytest.raises(DriverSpecError) as caught:
        parse(["--device", "/dev/x", "-e", "FOO"])
    message = str(caught.value)
    assert "element 3 ('FOO')" in message
    assert "followed by 'KEY=value'" in message


def test_source_names_service() -> None:
    """Service params name the service in their source."""
    assert params_source("t", "linux", "slam") == (
        "twin t driver profile 'linux' service 'slam' params"
    )
