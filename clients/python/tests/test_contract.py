"""The TypedDicts against the server's own contract: the components of its OpenAPI document, which is generated
from the same zod schemas it validates with. A field the server sends that a model lacks, or a model field the
server does not send, fails here."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import creditgate
from conftest import Server

MODELS = [
    "AdminIdentity",
    "AdminUser",
    "AddCreditsResponse",
    "ApiKey",
    "CompleteJobResponse",
    "CreateAndCallResponse",
    "CreateJobResponse",
    "CreateTeamResponse",
    "CreatedApiKey",
    "CreditBalance",
    "CreditTransaction",
    "Job",
    "JobCosts",
    "LlmCall",
    "LlmCallResponse",
    "LoginResponse",
    "ModelGroup",
    "ModelPrice",
    "Organization",
    "QueueItem",
    "Team",
    "Usage",
]


@pytest.fixture(scope="module")
def components(server: Server) -> dict[str, Any]:
    schemas: dict[str, Any] = httpx.get(f"{server.url}/openapi.json").json()["components"]["schemas"]
    return schemas


def _fields(schema: dict[str, Any], components: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(properties, required) of a schema, following $ref and allOf."""
    if "$ref" in schema:
        return _fields(components[schema["$ref"].rsplit("/", 1)[-1]], components)
    properties = set(schema.get("properties", {}))
    required = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        more, more_required = _fields(part, components)
        properties |= more
        required |= more_required
    return properties, required


@pytest.mark.parametrize("name", MODELS)
def test_model_matches_the_servers_schema(name: str, components: dict[str, Any]) -> None:
    model = getattr(creditgate, name)
    properties, required = _fields(components[name], components)
    assert properties, f"{name} has no properties in the OpenAPI document"
    always: set[str] = set(model.__required_keys__)
    optional: set[str] = set(model.__optional_keys__)
    assert always - properties == set(), f"{name}: fields the server does not send"
    assert required - (always | optional) == set(), f"{name}: fields the server sends that the model lacks"
