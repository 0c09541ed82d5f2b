"""The TypedDicts against the server's own contract: the components of its OpenAPI document, which is generated
from the same zod schemas it validates with, down through every nested model. A field the server sends that a
model lacks, or a model field the server does not send, fails here. Stream chunks have no schema there (they are
SSE frames): the chunks the server sends are checked against ChatCompletionChunk instead."""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin, get_type_hints, is_typeddict

import httpx
import pytest

import creditgate
from conftest import NewTeam, Server

MODELS = [
    "AdminIdentity",
    "AdminSetupStatus",
    "AdminUser",
    "AddCreditsResponse",
    "ApiKey",
    "BalanceHistory",
    "Breakdown",
    "CheckoutSession",
    "CompleteJobResponse",
    "CreateAndCallResponse",
    "CreateJobResponse",
    "CreateTeamResponse",
    "CreatedApiKey",
    "CreditBalance",
    "CreditRefill",
    "CreditTransaction",
    "DeductCreditsResponse",
    "Job",
    "JobCosts",
    "JobSummary",
    "LlmCall",
    "LlmCallResponse",
    "LoginResponse",
    "LowCreditTeams",
    "ModelGroup",
    "ModelPrice",
    "Organization",
    "Overview",
    "QueueItem",
    "Team",
    "TeamSummary",
    "TimeSeries",
    "Usage",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEndpointWithSecret",
    "WindowTotals",
]


@pytest.fixture(scope="module")
def components(server: Server) -> dict[str, Any]:
    schemas: dict[str, Any] = httpx.get(f"{server.url}/openapi.json").json()["components"]["schemas"]
    return schemas


def _resolved(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """The schema an object field or an array's items stand for: $ref followed, nullable variants dropped."""
    if "$ref" in schema:
        return _resolved(components[schema["$ref"].rsplit("/", 1)[-1]], components)
    variants = [part for part in schema.get("anyOf", schema.get("oneOf", [])) if part.get("type") != "null"]
    if len(variants) == 1:
        return _resolved(variants[0], components)
    if "array" in ([schema["type"]] if isinstance(schema.get("type"), str) else schema.get("type", [])):
        return _resolved(schema.get("items", {}), components)
    return schema


def _fields(schema: dict[str, Any], components: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """(properties, required) of a schema, following $ref and allOf."""
    schema = _resolved(schema, components)
    properties = dict(schema.get("properties", {}))
    required = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        more, more_required = _fields(part, components)
        properties |= more
        required |= more_required
    return properties, required


def _nested_model(annotation: Any) -> Any:
    """The TypedDict a field holds, itself, in a list or as an optional value; None for anything else."""
    if is_typeddict(annotation):
        return annotation
    if get_origin(annotation) in (list, Union, types.UnionType):
        for argument in get_args(annotation):
            if (model := _nested_model(argument)) is not None:
                return model
    return None


def _mismatches(model: Any, schema: dict[str, Any], components: dict[str, Any], path: str) -> list[str]:
    properties, required = _fields(schema, components)
    if not properties:
        return [f"{path} has no properties in the OpenAPI document"]
    always: set[str] = set(model.__required_keys__)
    optional: set[str] = set(model.__optional_keys__)
    found = []
    if extra := always - set(properties):
        found.append(f"{path}: fields the server does not send: {sorted(extra)}")
    if missing := required - (always | optional):
        found.append(f"{path}: fields the server sends that the model lacks: {sorted(missing)}")
    for name, annotation in get_type_hints(model).items():
        nested = _nested_model(annotation)
        if nested is not None and name in properties:
            found += _mismatches(nested, properties[name], components, f"{path}.{name}")
    return found


@pytest.mark.parametrize("name", MODELS)
def test_model_matches_the_servers_schema(name: str, components: dict[str, Any]) -> None:
    assert _mismatches(getattr(creditgate, name), components[name], components, name) == []


def _value_mismatches(model: Any, value: Any, path: str) -> list[str]:
    """What of a JSON value the model does not describe: missing or unknown keys, at every nested model."""
    if isinstance(value, list):
        return [problem for index, item in enumerate(value) for problem in _value_mismatches(model, item, f"{path}[{index}]")]
    if not isinstance(value, dict):
        return [] if value is None else [f"{path}: {value!r} is not an object"]
    keys = set(value)
    found = []
    if missing := set(model.__required_keys__) - keys:
        found.append(f"{path}: the server left out {sorted(missing)}")
    if unknown := keys - model.__required_keys__ - model.__optional_keys__:
        found.append(f"{path}: the model lacks {sorted(unknown)}")
    for name, annotation in get_type_hints(model).items():
        nested = _nested_model(annotation)
        if nested is not None and name in value:
            found += _value_mismatches(nested, value[name], f"{path}.{name}")
    return found


def test_stream_chunks_match_the_chat_completion_chunk_model(new_team: NewTeam) -> None:
    team = new_team(3)
    weather_tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}
    plain = team.client.create_and_call_stream(team.team_id, "chunks", [{"role": "user", "content": "Hi"}], stream_options={"include_usage": True})
    tools = team.client.create_and_call_stream(team.team_id, "tool-chunks", [{"role": "user", "content": "The weather in Paris?"}], tools=[weather_tool])
    chunks = [*plain, *tools]
    assert any(chunk.get("usage") for chunk in chunks), "a chunk with usage"
    assert any(choice["delta"].get("tool_calls") for chunk in chunks for choice in chunk["choices"]), "a chunk with a tool call"
    assert _value_mismatches(creditgate.ChatCompletionChunk, chunks, "chunks") == []
