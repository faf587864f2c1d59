"""Normalized run options and the spec hash of protocol.md 4.2."""

from __future__ import annotations

import pytest

from edge_core.errors import DriverSpecError
from edge_core.model.options import canonical_flag, fold, merge, parse_params
from edge_core.model.spec import (
    LABEL_FINGERPRINT,
    LABEL_SPEC_HASH,
    LABEL_TWIN,
    ContainerSpec,
    spec_hash,
)

SRC = "test params"


def test_canonical_flags() -> None:
    """Short aliases map to long flag names; long names stay."""
    assert canonical_flag("-e") == "--env"
    assert canonical_flag("-v") == "--volume"
    assert canonical_flag("--net") == "--network"
    assert canonical_flag("--device") == "--device"


def test_parse_params_folds_env_and_labels_last_wins() -> None:
    """--env and --label become maps where the last value of a key wins."""
    options = parse_params(
        ["-e", "A=1", "--env", "A=2", "-l", "x=1", "--label=y"], source=SRC
    )
    assert options["--env"] == {"A": "2"}
    assert options["--label"] == {"x": "1", "y": ""}


def test_repeated_flags_single_last_wins_set_like_sorted() -> None:
    """A repeated single-value flag keeps its last value; set-like flags are sorted."""
    options = fold([("--gpus", "all"), ("--gpus", "1")], source=SRC)
    assert options["--gpus"] == ["1"]
    tmpfs = fold([("--tmpfs", "/z"), ("--tmpfs", "/a")], source=SRC)
    assert tmpfs["--tmpfs"] == ["/a", "/z"]


def test_unknown_flag_and_missing_value_are_refused() -> None:
    """Unknown flags and flags without values raise DriverSpecError."""
    with pytest.raises(DriverSpecError, match="not supported"):
        parse_params(["--bogus"], source=SRC)
    with pytest.raises(DriverSpecError, match="has no value"):
        parse_params(["--device"], source=SRC)


def test_merge_semantics() -> None:
    """Maps merge by key, set-like lists combine sorted, single flags are replaced."""
    base = parse_params(
        ["-e", "A=1", "-v", "/b:/b", "--restart", "no", "--init"], source=SRC
    )
    extra = parse_params(
        ["-e", "A=2", "-e", "B=3", "-v", "/a:/a", "--restart", "always"], source=SRC
    )
    merged = merge(base, extra)
    assert merged["--env"] == {"A": "2", "B": "3"}
    assert merged["--volume"] == ["/a:/a", "/b:/b"]
    assert merged["--restart"] == ["always"]
    assert merged["--init"] is True
    assert base["--env"] == {"A": "1"}


def _hash(tokens: list[str], **changes: object) -> str:
    fields: dict[str, object] = {
        "image": "cyberwaveos/so101-driver:dev",
        "image_id": "sha256:1",
        "options": parse_params(tokens, source=SRC),
        "command": ["run"],
    }
    fields.update(changes)
    return spec_hash(**fields)  # type: ignore[arg-type]


BASE = ["-e", "A=1", "-e", "B=2", "--device", "/dev/a", "--device", "/dev/b"]


def test_spec_hash_ignores_order_of_env_and_set_like_flags() -> None:
    """Reordering env keys or set-like flags keeps the spec hash."""
    reordered = ["--device", "/dev/b", "-e", "B=2", "--device", "/dev/a", "-e", "A=1"]
    assert _hash(BASE) == _hash(reordered)


@pytest.mark.parametrize(
    "changes",
    [
        {"image": "cyberwaveos/so101-driver:staging"},
        {"image_id": "sha256:2"},
        {"image_id": None},
        {"command": ["run", "--fast"]},
        {"command": []},
        {"extra_networks": ["ros"]},
    ],
)
def test_spec_hash_changes_with_inputs(changes: dict[str, object]) -> None:
    """A different image, image id, command or network gives a different hash."""
    assert _hash(BASE, **changes) != _hash(BASE)


def test_spec_hash_changes_with_env() -> None:
    """A changed env value or an extra env key gives a different hash."""
    assert _hash([*BASE[:-2], "-e", "B=3"]) != _hash(BASE)
    assert _hash([*BASE, "-e", "C=1"]) != _hash(BASE)


def test_spec_hash_ignores_edge_labels_but_not_others() -> None:
    """The edge's own labels are left out of the hash; other labels count."""
    plain = _hash(BASE)
    with_edge = _hash([*BASE, "-l", f"{LABEL_TWIN}=t", "-l", f"{LABEL_SPEC_HASH}=h"])
    with_fp = _hash([*BASE, "-l", f"{LABEL_FINGERPRINT}=fp"])
    with_other = _hash([*BASE, "-l", "team=robots"])
    assert plain == with_edge == with_fp
    assert with_other != plain


def test_spec_hash_is_sha256_hex() -> None:
    """The hash is 64 lowercase hex characters."""
    digest = _hash(BASE)
    assert len(digest) == 64
    assert digest == digest.lower()
    int(digest, 16)


def test_container_spec_repr_hides_env() -> None:
    """A spec's repr never shows its options, which carry the API token."""
    spec = ContainerSpec(
        name="cyberwave-driver-1",
        image="i",
        twin_uuid="t",
        service=None,
        command=(),
        options={"--env": {"CYBERWAVE_API_KEY": "cw_secret"}},
        labels={},
        spec_hash="h",
    )
    assert "cw_secret" not in repr(spec)
    assert spec.environment == {"CYBERWAVE_API_KEY": "cw_secret"}
