"""Pure-ASGI middleware: request id, access log, metrics, security headers.

It sits outside FastAPI's exception handling, so it also sees requests that fail
with an unhandled exception: those become a JSON 500 (no stack trace leaves the
process; it is logged with the request id instead).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brigade_api import metrics
from brigade_api.logs import request_id_var

access_log = logging.getLogger("brigade.access")
error_log = logging.getLogger("brigade.errors")

REQUEST_ID_HEADER = b"x-request-id"
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (
        b"content-security-policy",
        b"default-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; "
        b"object-src 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER:
            if _SANE_REQUEST_ID.fullmatch(value):
                return bytes(value).decode("ascii")
            break
    return uuid.uuid4().hex


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "<unmatched>"


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.append((REQUEST_ID_HEADER, request_id.encode("ascii")))
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        metrics.HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:  # noqa: BLE001 - last resort: JSON 500, never a stack trace
            error_log.exception("unhandled error", extra={"path": scope.get("path")})
            status = 500
            if not response_started:
                body = json.dumps(
                    {
                        "error": "internal_error",
                        "detail": "internal server error",
                        "request_id": request_id,
                        "fields": [],
                    }
                ).encode()
                await send_wrapper(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
        finally:
            metrics.HTTP_IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = str(scope.get("method", ""))
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
            metrics.HTTP_LATENCY.labels(method, route).observe(elapsed)
            access_log.info(
                "request",
                extra=_access_fields(scope, method, route, status, elapsed),
            )
            request_id_var.reset(token)


def _access_fields(
    scope: Scope, method: str, route: str, status: int, elapsed: float
) -> dict[str, Any]:
    client = scope.get("client")
    user_agent = ""
    for name, value in scope.get("headers", []):
        if name == b"user-agent":
            user_agent = value.decode("latin-1")[:200]
            break
    return {
        "method": method,
        "path": scope.get("path", ""),
        "route": route,
        "status": status,
        "duration_ms": round(elapsed * 1000, 2),
        "client": client[0] if client else None,
        "user_agent": user_agent,
    }
