"""One JSON error shape for every failure, and the mapping of exceptions onto it.

``{"error": code, "detail": text, "request_id": id, "fields": [...]}``
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from brigade_api.logs import request_id_var

log = logging.getLogger("brigade.errors")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "service_unavailable",
}


class ApiError(Exception):
    def __init__(
        self,
        status_code: int,
        code: str,
        detail: str,
        *,
        fields: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.code = code
        self.detail = detail
        self.fields = fields or []
        self.headers = headers


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def conflict(detail: str, code: str = "conflict") -> ApiError:
    return ApiError(409, code, detail)


def field_error(field: str, message: str, *, status_code: int = 422) -> ApiError:
    return ApiError(
        status_code,
        "validation_error" if status_code == 422 else "conflict",
        f"{field}: {message}",
        fields=[{"field": field, "location": "body", "message": message, "type": "value_error"}],
    )


def unauthorized(detail: str = "not authenticated") -> ApiError:
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def error_body(
    code: str, detail: str, fields: Sequence[dict[str, str]] | None = None
) -> dict[str, Any]:
    return {
        "error": code,
        "detail": detail,
        "request_id": request_id_var.get(),
        "fields": list(fields or []),
    }


def error_response(
    status_code: int,
    code: str,
    detail: str,
    fields: Sequence[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, detail, fields), status_code=status_code, headers=headers)


def _validation_fields(errors: Sequence[Any]) -> list[dict[str, str]]:
    fields = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        location = loc[0] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else ""
        path = loc[1:] if location else loc
        # Errors about the whole body (bad JSON, missing body) name "body".
        name = (
            ".".join(path) if path and err.get("type") != "json_invalid" else (location or "body")
        )
        fields.append(
            {
                "field": name,
                "location": location or "body",
                "message": str(err.get("msg", "invalid value")),
                "type": str(err.get("type", "value_error")),
            }
        )
    return fields


def db_unavailable() -> JSONResponse:
    return error_response(
        503,
        "database_unavailable",
        "the database is unavailable; retry shortly",
        headers={"Retry-After": "5"},
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.detail, exc.fields, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, detail, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = _validation_fields(exc.errors())
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
        return error_response(422, "validation_error", f"invalid input: {summary}", fields)

    @app.exception_handler(sa_exc.DBAPIError)
    async def _dbapi_error(_: Request, exc: sa_exc.DBAPIError) -> JSONResponse:
        if isinstance(exc, sa_exc.IntegrityError):
            log.info("integrity conflict", extra={"error": str(exc.orig)})
            return error_response(409, "conflict", "the change conflicts with existing data")
        if isinstance(exc, sa_exc.DataError):
            return error_response(422, "validation_error", "a value is out of range")
        if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)) or (
            exc.connection_invalidated
        ):
            log.warning("database unavailable", extra={"error": str(exc.orig)})
            return db_unavailable()
        raise exc

    @app.exception_handler(sa_exc.TimeoutError)
    async def _pool_timeout(_: Request, exc: sa_exc.TimeoutError) -> JSONResponse:
        log.warning("database pool exhausted", extra={"error": str(exc)})
        return db_unavailable()
