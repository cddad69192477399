"""The statuses the HTTP layer answers before an operation runs (413, 414, 431, 501) are in
the OpenAPI document of every operation, with an envelope schema their real bodies fit."""

from __future__ import annotations

import json

import pytest
from test_openapi import component, ref_of, validator_for

from facets.edge.server_errors import envelope_bytes

HTTP_LAYER_STATUSES = ["413", "414", "431", "501"]


@pytest.fixture
def document(client) -> dict:
    return client.get("/openapi.json").json


def _operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "patch", "delete", "put"}:
                yield f"{method.upper()} {path}", operation


def test_every_operation_documents_the_http_layer_statuses(document):
    operations = dict(_operations(document))
    api = {name: op for name, op in operations.items() if " /api/" in name}
    assert len(api) >= 10
    for name, operation in api.items():
        for status in HTTP_LAYER_STATUSES:
            response = operation["responses"].get(status)
            assert response, (name, status)
            schema = response["content"]["application/json"]["schema"]
            assert ref_of(schema) == component("HTTPErrorPayload"), (name, status)
        assert "405" not in operation["responses"], name  # a 405 is for a method with none


def test_a_real_413_body_fits_its_documented_schema(make_app, world, document):
    app = make_app(MAX_CONTENT_LENGTH=100)
    world.org("acme")  # the same database as ``make_app``'s
    owner = world.caller("acme", "owner")
    response = app.test_client().post(
        "/api/v1/org/acme/projects", data=b"x" * 200, headers=owner.headers
    )
    assert response.status_code == 413
    validator_for(document, "HTTPErrorPayload").validate(response.json)
    with pytest.raises(Exception, match="is not one of"):
        validator_for(document, "APIErrorPayload").validate(response.json)


@pytest.mark.parametrize("status", [414, 431, 501])
def test_gunicorns_envelopes_fit_the_documented_schema(document, status):
    body = envelope_bytes(status, "reason").partition(b"\r\n\r\n")[2]
    validator_for(document, "HTTPErrorPayload").validate(json.loads(body))
