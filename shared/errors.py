"""Domain errors and the one place that renders them.

Services raise subclasses of :class:`AppError` next to the code that detects the situation; the
handlers installed by :func:`install_error_handlers` turn them, request validation errors and
unexpected HTTP errors into one machine-readable shape::

    {"error": "PaymentNotRefundable", "detail": "the refund window has closed"}
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class AppError(Exception):
    """A failure a client can understand; ``status_code`` says which 4xx it is."""

    status_code: ClassVar[int] = 400
    default_detail: ClassVar[str] = "the request cannot be processed"

    def __init__(self, detail: str | None = None, *, extra: dict[str, Any] | None = None) -> None:
        self.detail = detail or self.default_detail
        self.extra = extra or {}
        super().__init__(self.detail)

    @property
    def name(self) -> str:
        return type(self).__name__


class NotFound(AppError):
    status_code = 404
    default_detail = "not found"


class Unauthorized(AppError):
    status_code = 401
    default_detail = "a valid bearer token is required"


class Forbidden(AppError):
    status_code = 403
    default_detail = "not allowed"


class Conflict(AppError):
    status_code = 409
    default_detail = "the request conflicts with the current state"


class UnprocessableEntity(AppError):
    status_code = 422
    default_detail = "the request is not valid"


_HTTP_ERROR_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    429: "TooManyRequests",
}


def error_body(name: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": name, "detail": detail, **extra}


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    headers = None
    if exc.status_code == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    elif exc.status_code == 503:  # a dependency is down: say when to try again
        headers = {"Retry-After": "1"}
    elif exc.status_code == 429:  # a limit: the error says in how many seconds it lifts
        headers = {"Retry-After": str(exc.extra.get("retry_after", 60))}
    return JSONResponse(
        error_body(exc.name, exc.detail, **exc.extra), status_code=exc.status_code, headers=headers
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    detail = "; ".join(
        f"{'.'.join(str(p) for p in problem['loc'])}: {problem['msg']}" for problem in problems
    )
    return JSONResponse(
        jsonable_encoder(error_body("ValidationError", detail, errors=problems)), status_code=422
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    name = _HTTP_ERROR_NAMES.get(exc.status_code, "HTTPError")
    return JSONResponse(
        error_body(name, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


# Text PostgreSQL cannot store (the NUL character, invalid in every text column): the input is at
# fault, wherever it came from (a query string, a JSON body), so it is a 422, not a 500.
_UNSTORABLE_TEXT = {"22021", "22P05"}


# The database rolled the request's transaction back because it collided with a concurrent one:
# a deadlock (40P01) or a serialization failure (40001). Nothing of it was committed, so the
# client is told to send the same request again (503 and Retry-After, as for a dependency that
# is down; the Idempotency-Key is released on a 5xx, so the retry runs it afresh).
_CONFLICT_SQLSTATES = {"40P01", "40001"}


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in _UNSTORABLE_TEXT:
        return JSONResponse(
            error_body("InvalidText", "text must not contain NUL characters"), status_code=422
        )
    if sqlstate in _CONFLICT_SQLSTATES:
        logger.warning("transaction rolled back by a concurrent one (%s): %s", sqlstate, exc)
        return JSONResponse(
            error_body(
                "TransactionConflict",
                "the request collided with a concurrent change and was undone; "
                "retry the same request",
            ),
            status_code=503,
            headers={"Retry-After": "1"},
        )
    return await _unexpected_error(request, exc)


# A dependency that is down or just dropped our connection is not a bug: the client is told so
# with a 503 and may retry (every POST takes an Idempotency-Key, so a retry never doubles).
# SQLSTATE class 08 is "connection exception"; 57P01-03 are the server shutting down or
# terminating the backend; 53300 is "too many connections".
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def unavailable_dependency(exc: BaseException) -> str | None:
    """``"database"`` or ``"broker"`` when ``exc`` (or what caused it) says that one is down."""
    from shared.broker import BrokerNotConnected

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BrokerNotConnected):
            return "broker"
        if isinstance(current, DBAPIError):
            sqlstate = str(getattr(current.orig, "sqlstate", "") or "")
            if (
                current.connection_invalidated
                or isinstance(current, InterfaceError | OperationalError)
                or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
            ):
                return "database"
        if isinstance(current, PoolTimeout | ConnectionError | TimeoutError):
            return "database"
        if str(getattr(current, "sqlstate", "") or "").startswith(_UNAVAILABLE_SQLSTATES):
            return "database"
        current = current.__cause__ or current.__context__
    return None


def _unavailable(dependency: str) -> JSONResponse:
    return JSONResponse(
        error_body(
            "ServiceUnavailable", f"the {dependency} is unavailable; retry the same request"
        ),
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    dependency = unavailable_dependency(exc)
    if dependency is not None:
        logger.warning("%s unavailable: %s", dependency, exc)
        return _unavailable(dependency)
    logger.exception("unhandled error", exc_info=exc)
    return JSONResponse(error_body("InternalError", "internal error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to the ``{"error", "detail"}`` shape, once for the whole app."""
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)
