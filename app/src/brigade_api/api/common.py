"""Shared OpenAPI response declarations and path parameter types."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from brigade_api.schemas import MAX_INT, ErrorResponse

_err: dict[str, Any] = {"model": ErrorResponse}

PUBLIC: dict[int | str, dict[str, Any]] = {422: _err, 503: _err}
AUTHED: dict[int | str, dict[str, Any]] = {401: _err, 403: _err, 422: _err, 503: _err}
WITH_404: dict[int | str, dict[str, Any]] = {**AUTHED, 404: _err}
WITH_409: dict[int | str, dict[str, Any]] = {**WITH_404, 409: _err}
PUBLIC_404: dict[int | str, dict[str, Any]] = {**PUBLIC, 404: _err}


def id_path(description: str) -> Any:
    return Path(ge=1, le=MAX_INT, description=description)


CategoryId = Annotated[int, id_path("Menu category id")]
ItemId = Annotated[int, id_path("Menu item id")]
TableId = Annotated[int, id_path("Table id")]
OrderId = Annotated[int, id_path("Order id")]
UserId = Annotated[int, id_path("User id")]
