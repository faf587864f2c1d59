"""The mlmodels calls of ``CloudClient`` (R16, R17) against the emulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from edge_core.cloud.rest import CloudClient
from edge_core.errors import BackendUnavailable, NotFoundError
from tests.emulator.server import Emulator

pytestmark = pytest.mark.integration

MODEL_UUID = str(uuid.UUID("5d2e0c3a-1111-4222-8333-944455556666"))


@pytest.fixture
def client(emulator: Emulator) -> Iterator[CloudClient]:
    """A client scoped to a workspace, to show mlmodels calls ignore the scope."""
    made = CloudClient(
        base_url=emulator.url,
        token=lambda: emulator.token,
        workspace_id="ws-1",
        retries=3,
        backoff_initial=0.01,
        version="test",
    )
    yield made
    made.close()


def test_external_id_lookup_takes_the_first_match(
    emulator: Emulator, client: CloudClient
) -> None:
    """``?model_external_id=`` answers a list; the first element is the model."""
    emulator.put_mlmodel({"uuid": MODEL_UUID, "model_external_id": "yolov8n"})

    model = client.get_mlmodel("yolov8n", timeout=2.0)

    assert model["uuid"] == MODEL_UUID
    (request,) = emulator.requests(path_regex="/api/v1/mlmodels")
    assert request.query == {"model_external_id": ["yolov8n"]}
    assert request.auth == "valid"


def test_uuid_lookup_uses_the_path_and_no_parameters(
    emulator: Emulator, client: CloudClient
) -> None:
    """A canonical UUID is fetched as ``/mlmodels/{uuid}`` without workspace_uuid."""
    emulator.put_mlmodel({"uuid": MODEL_UUID, "model_external_id": "yolov8n"})

    model = client.get_mlmodel(MODEL_UUID.upper(), timeout=2.0)

    assert model["model_external_id"] == "yolov8n"
    (request,) = emulator.requests(path_regex="/api/v1/mlmodels")
    assert request.path == f"/api/v1/mlmodels/{MODEL_UUID}"
    assert request.query == {}


def test_unknown_external_id_is_not_found(client: CloudClient) -> None:
    """An empty list means the catalog has no such model."""
    with pytest.raises(NotFoundError, match="no model 'ghost'"):
        client.get_mlmodel("ghost", timeout=2.0)


def test_weights_answer_and_404_for_unhosted_models(
    emulator: Emulator, client: CloudClient
) -> None:
    """/weights returns the signed URL of a hosted model and 404 otherwise."""
    emulator.put_mlmodel({"uuid": MODEL_UUID}, weights={"signed_url": "https://g/x"})
    assert client.get_mlmodel_weights(MODEL_UUID, timeout=2.0) == {
        "signed_url": "https://g/x"
    }

    emulator.put_mlmodel({"uuid": MODEL_UUID})
    with pytest.raises(NotFoundError):
        client.get_mlmodel_weights(MODEL_UUID, timeout=2.0)


def test_mlmodels_calls_use_their_own_timeout_and_are_not_retried(
    emulator: Emulator, client: CloudClient
) -> None:
    """A hanging catalog fails after the call's timeout, after exactly one request."""
    emulator.fault("/api/v1/mlmodels", hang=True)

    with pytest.raises(BackendUnavailable, match="timed out"):
        client.get_mlmodel("yolov8n", timeout=0.3)

    assert len(emulator.requests(path_regex="/api/v1/mlmodels")) == 1


def test_a_5xx_is_not_retried_either(emulator: Emulator, client: CloudClient) -> None:
    """R16 has no retries (protocol.md 1.3): one 500 is the answer."""
    emulator.fault("/api/v1/mlmodels", status=500)

    with pytest.raises(BackendUnavailable):
        client.get_mlmodel("yolov8n", timeout=2.0)

    assert len(emulator.requests(path_regex="/api/v1/mlmodels")) == 1
