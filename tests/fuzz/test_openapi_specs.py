"""Every service's OpenAPI document is valid and says what a client needs to know."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate

from tests.fuzz.test_openapi_fuzz import FACTORIES

METHODS = {"get", "post", "put", "patch", "delete"}


def spec_of(service: str) -> dict[str, Any]:
    factory, settings_class = FACTORIES[service]
    document: dict[str, Any] = factory(settings_class()).openapi()
    return document


@pytest.mark.parametrize("service", sorted(FACTORIES))
def test_the_document_is_valid_openapi(service: str) -> None:
    validate(spec_of(service))


@pytest.mark.parametrize("service", sorted(FACTORIES))
def test_every_operation_has_a_summary_a_tag_and_documented_errors(service: str) -> None:
    problems = []
    ids = []
    for path, operations in spec_of(service)["paths"].items():
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            where = f"{method.upper()} {path}"
            ids.append(operation["operationId"])
            if not operation.get("summary") or not operation.get("tags"):
                problems.append(f"{where}: no summary or tag")
            error = operation["responses"].get("default", {})
            schema = error.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref") != "#/components/schemas/ErrorBody":
                problems.append(f"{where}: errors are not documented")
            if "{" in path and "404" not in operation["responses"]:
                problems.append(f"{where}: no 404 documented")
    assert not problems, problems
    assert len(ids) == len(set(ids)), "operation ids must be unique"


@pytest.mark.parametrize("service", sorted(FACTORIES))
def test_every_request_body_has_an_example_that_the_service_accepts(service: str) -> None:
    from fastapi.routing import APIRoute
    from pydantic import BaseModel

    factory, settings_class = FACTORIES[service]
    app = factory(settings_class())
    missing, invalid = [], []
    for route in app.routes:
        if not isinstance(route, APIRoute) or route.body_field is None:
            continue
        model = route.body_field.field_info.annotation
        models = [m for m in getattr(model, "__args__", (model,)) if isinstance(m, type)]
        body = next((m for m in models if issubclass(m, BaseModel)), None)
        assert body is not None, route.path
        extra = body.model_config.get("json_schema_extra")
        found = extra.get("examples") if isinstance(extra, dict) else None
        examples = found if isinstance(found, list) else []
        if not examples:
            missing.append(f"{route.path} {body.__name__}")
        for example in examples:
            try:
                body.model_validate(example)
            except ValueError as exc:
                invalid.append(f"{route.path} {body.__name__}: {exc}")
    assert not missing, f"request bodies without an example: {missing}"
    assert not invalid, invalid
