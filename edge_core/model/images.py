"""Docker image references: tags, digests and the edge's tag rewrites.

Driver images may be written without a tag; the edge core then picks one
from the environment (protocol.md 4.3 step 2), swaps in a Jetson build on
Jetson hosts (step 3) and never pulls locally built tags (step 4). All of
that depends on reading the tag the way Docker does: the tag is the text
after the last ``:`` when no ``/`` follows it, and a digest follows ``@``.

It does not check that a reference is valid; Docker reports that when the
image is pulled.
"""

from __future__ import annotations

PRODUCTION = "production"
JETSON_TAG_PREFIX = "jetson-"


def split_reference(ref: str) -> tuple[str, str | None, str | None]:
    """``(repository, tag, digest)`` of an image reference.

    ``registry:5000/app`` has no tag; ``app:1.0@sha256:…`` has both.
    """
    name, at, digest = ref.partition("@")
    colon = name.rfind(":")
    if colon != -1 and "/" not in name[colon + 1 :]:
        repository, tag = name[:colon], name[colon + 1 :]
    else:
        repository, tag = name, None
    return repository, tag, (digest if at else None)


def has_tag(ref: str) -> bool:
    """Whether the reference names a tag (a digest alone does not count)."""
    return split_reference(ref)[1] is not None


def has_digest(ref: str) -> bool:
    """Whether the reference pins a digest with ``@``."""
    return split_reference(ref)[2] is not None


def apply_environment_tag(ref: str, environment: str | None) -> str:
    """``ref`` with ``:<environment>`` appended when it has no tag or digest.

    Production (the default when ``environment`` is empty) keeps the
    reference as it is, so Docker's ``latest`` applies.
    """
    env = (environment or "").strip().lower() or PRODUCTION
    if env == PRODUCTION:
        return ref
    _, tag, digest = split_reference(ref)
    if tag is not None or digest is not None:
        return ref
    return f"{ref}:{env}"


def jetson_variant(ref: str) -> str | None:
    """The Jetson build of a tagged reference (``repo:jetson-<tag>``).

    ``None`` for a digest reference, an untagged one, or a tag that is
    already a Jetson tag.
    """
    repository, tag, digest = split_reference(ref)
    if digest is not None or tag is None or tag.startswith(JETSON_TAG_PREFIX):
        return None
    return f"{repository}:{JETSON_TAG_PREFIX}{tag}"


def is_local_tag(ref: str) -> bool:
    """Whether the tag marks a locally built image (``local``, ``local-*``,
    ``*-local``) that is never pulled when present."""
    tag = split_reference(ref)[1]
    if not tag:
        return False
    return tag == "local" or tag.startswith("local-") or tag.endswith("-local")
