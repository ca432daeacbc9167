"""FastAPI dependencies: application context, DB session, authentication, roles."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from brigade_api.context import AppContext
from brigade_api.errors import ApiError, unauthorized
from brigade_api.models import ROLE_RANK, Role, User
from brigade_api.security import InvalidToken

log = logging.getLogger("brigade.auth")

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="Token from POST /api/v1/auth/token (valid for 15 minutes by default).",
)


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def get_db(ctx: Ctx) -> Iterator[Session]:
    session = ctx.session_factory()
    try:
        yield session
    finally:
        try:
            session.close()
        except Exception:
            log.debug("session close failed", exc_info=True)


DB = Annotated[Session, Depends(get_db)]


def current_user(
    ctx: Ctx,
    db: DB,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> User:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized()
    try:
        claims = ctx.tokens.verify(credentials.credentials)
    except InvalidToken as exc:
        raise unauthorized(f"invalid token: {exc}") from exc
    # Always re-read the user: a deactivated account or changed role takes
    # effect immediately, not when the token expires.
    user = db.get(User, claims.user_id)
    if user is None or not user.is_active:
        raise unauthorized("account disabled or removed")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require_role(minimum: Role) -> Callable[[User], User]:
    def check(user: CurrentUser) -> User:
        if ROLE_RANK.get(Role(user.role), 0) < ROLE_RANK[minimum]:
            raise ApiError(403, "forbidden", f"requires the {minimum.value} role or higher")
        return user

    check.__name__ = f"require_{minimum.value}"
    return check


StaffUser = Annotated[User, Depends(require_role(Role.staff))]
ManagerUser = Annotated[User, Depends(require_role(Role.manager))]
AdminUser = Annotated[User, Depends(require_role(Role.admin))]
