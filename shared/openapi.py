"""What every service's OpenAPI document says beyond FastAPI's defaults.

- Operation ids are the route functions' names (``subscribe``, ``list_plans``), so the clients
  generated from the documents read like the code; a later route reusing a name keeps FastAPI's
  long, unique id.
- Errors are documented in the one shape :mod:`shared.errors` renders: every operation that takes
  a token documents 401 and 403, every operation with a path parameter 404, every operation with
  input 422 (with the list of problems), every operation under a limit 429 (with ``Retry-After``,
  see :mod:`shared.ratelimit`), and ``default`` names the shape of any other error (a
  domain conflict, an idempotency clash…).
- The answers agree with the document on methods: a method a path does not have (``OPTIONS``
  included: the APIs serve no CORS preflight) answers 405 with ``Allow`` listing every method of
  that path, not only those of the one route Starlette happened to try.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.utils import generate_unique_id
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Match

from shared import auth, ratelimit
from shared.errors import error_body


class ErrorBody(BaseModel):
    """Every error answer: the error's name, a sentence for people, sometimes more fields."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{"error": "NotFound", "detail": "no such plan"}]},
    )

    error: str = Field(description="The error's name, stable for programs to branch on.")
    detail: str = Field(description="What went wrong, for people.")


class Problem(BaseModel):
    loc: list[str | int] = Field(description="Where in the request: body, query, path, header.")
    msg: str
    type: str


class ValidationErrorBody(ErrorBody):
    """The request did not match its schema (malformed JSON, wrong types) or a rule."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "ValidationError",
                    "detail": "body.months: Input should be less than or equal to 12",
                    "errors": [
                        {
                            "loc": ["body", "months"],
                            "msg": "Input should be less than or equal to 12",
                            "type": "less_than_equal",
                        }
                    ],
                }
            ]
        }
    )

    errors: list[Problem] = Field(
        default_factory=list, description="Each problem found (schema validation only)."
    )


_AUTHENTICATED = {
    auth.get_principal,
    auth.get_optional_principal,
    auth.require_admin,
    auth.require_service,
    auth.require_admin_or_service,
    auth.require_internal_service,
    auth.require_admin_or_internal_service,
}
_REQUIRED = _AUTHENTICATED - {auth.get_optional_principal}

_SCHEMAS = ("ErrorBody", "Problem", "ValidationErrorBody")


def operation_ids() -> Callable[[APIRoute], str]:
    """A ``generate_unique_id_function`` for one app: the route's name while it is unique."""
    owners: dict[str, tuple[str, frozenset[str]]] = {}

    def unique_id(route: APIRoute) -> str:
        where = (route.path_format, frozenset(route.methods or ()))
        if owners.setdefault(route.name, where) != where:
            return generate_unique_id(route)
        return route.name

    return unique_id


def _calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def _error(description: str, schema: str = "ErrorBody") -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_RETRY_AFTER = {
    "description": "Seconds until the limit lets a request through again.",
    "schema": {"type": "integer", "minimum": 1},
}


def _document_operation(route: Any, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    calls = set(_calls(route.dependant))
    if calls & _AUTHENTICATED:
        responses.setdefault("401", _error("No valid bearer token (missing, malformed, expired)."))
    if calls & _REQUIRED:
        responses.setdefault("403", _error("The token's roles do not allow this."))
    if route.dependant.path_params:
        responses.setdefault("404", _error("Not found, or not yours."))
    if calls & ratelimit.CHECKS:
        responses.setdefault(
            "429", _error("Too many such requests: try again after `Retry-After` seconds.")
        )
        responses["429"].setdefault("headers", {"Retry-After": _RETRY_AFTER})
    if "422" in responses or operation.get("parameters") or operation.get("requestBody"):
        responses["422"] = _error(
            "The request does not match its schema (malformed JSON, wrong types, bad values),"
            " or a rule refuses it.",
            "ValidationErrorBody",
        )
    for status, response in responses.items():
        if status.startswith(("4", "5")) and "content" not in response and status != "503":
            response["content"] = _error("")["content"]
    responses.setdefault("default", _error("Any other error, in the same shape."))


def _consts_as_enums(node: Any) -> None:
    """``{"const": "month"}`` inside ``anyOf`` becomes ``{"enum": ["month"]}`` (the same schema):
    client generators handle one-value enums in unions, and some mis-parse consts there."""
    if isinstance(node, dict):
        for choice in node.get("anyOf", ()):
            if isinstance(choice, dict) and "const" in choice and "enum" not in choice:
                choice["enum"] = [choice.pop("const")]
        for value in node.values():
            _consts_as_enums(value)
    elif isinstance(node, list):
        for value in node:
            _consts_as_enums(value)


def _methods_of_path(request: Request) -> list[str]:
    """Every method of the path the request names: the routes that share the path template of
    the first route matching it (so ``/movies/bulk`` does not borrow ``/movies/{id}``'s)."""
    routes = [route for route in iter_route_contexts(request.app.routes) if route.path_format]
    template = next(
        (r.path_format for r in routes if r.matches(request.scope)[0] is not Match.NONE), None
    )
    methods: set[str] = set()
    for route in routes:
        if route.path_format == template and route.methods:
            methods |= route.methods
    return sorted(methods)


async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    methods = _methods_of_path(request)
    allow = ", ".join(methods) if methods else (exc.headers or {}).get("Allow", "")
    return JSONResponse(
        error_body("MethodNotAllowed", f"{request.method} is not allowed here; allowed: {allow}"),
        status_code=405,
        headers={"Allow": allow},
    )


def document(app: FastAPI) -> None:
    """Make ``app.openapi()`` document errors and operation ids as described above, and make
    405 answers list the methods the document gives the path."""
    app.add_exception_handler(405, _method_not_allowed)
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = build()
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        definitions = ValidationErrorBody.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        schemas.update(definitions.pop("$defs", {}))
        schemas["ValidationErrorBody"] = definitions
        schemas["ErrorBody"] = ErrorBody.model_json_schema()
        for route in iter_route_contexts(app.routes):
            if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
                continue
            path = spec["paths"].get(route.path_format, {})
            for method in route.methods or ():
                if (operation := path.get(method.lower())) is not None:
                    _document_operation(route, operation)
        # FastAPI's own validation schemas are replaced by ours above.
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        _consts_as_enums(spec)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["ErrorBody", "ValidationErrorBody", "document", "operation_ids"]
