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
