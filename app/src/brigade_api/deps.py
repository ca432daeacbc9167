"""FastAPI dependencies: application context, DB session, authentication, roles.

FastAPI runs every plain ``def`` dependency in the threadpool, and each such
hop costs far more CPU than what these small functions do. So only what talks
to the database is synchronous: ``get_ctx`` and ``get_db`` are ``async`` (they
do no I/O, except a rollback on an error path, which goes to the threadpool),
and a role check reads the user in the same hop as it checks the token.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from brigade_api.context import AppContext
from brigade_api.errors import ApiError, unauthorized
from brigade_api.models import ROLE_RANK, Role, User
from brigade_api.security import InvalidToken

log = logging.getLogger("brigade.auth")

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="Token from POST /api/v1/auth/token (valid for 15 minutes by default).",
)


async def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def _close_quietly(session: Session) -> None:
    try:
        session.close()
    except Exception:
        log.debug("session close failed", exc_info=True)


async def get_db(ctx: Ctx) -> AsyncIterator[Session]:
    # A session connects lazily, on its first statement, in the endpoint's thread.
    session = ctx.session_factory()
    try:
        yield session
    finally:
        if session.in_transaction():
            # Left open (an error path): closing rolls back, a round trip.
            await run_in_threadpool(_close_quietly, session)
        else:
            # Committed or never used: closing does no I/O.
            _close_quietly(session)


DB = Annotated[Session, Depends(get_db)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def _token_user_id(ctx: AppContext, credentials: HTTPAuthorizationCredentials | None) -> int:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized()
    try:
        return ctx.tokens.verify(credentials.credentials).user_id
    except InvalidToken as exc:
        raise unauthorized(f"invalid token: {exc}") from exc


def current_user(ctx: Ctx, db: DB, credentials: Credentials) -> User:
    """The full account (for /users/me and password changes)."""
    user_id = _token_user_id(ctx, credentials)
    # Always re-read the user: a deactivated account or changed role takes
    # effect immediately, not when the token expires.
    user = db.get(User, user_id)
    if user is None or not user.is_active:
        raise unauthorized("account disabled or removed")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as far as a role check needs: read fresh on every request."""

    id: int
    role: Role


# One indexed primary-key read, no ORM object: the role of an active account.
_ACTIVE_ROLE = select(User.role).where(User.id == bindparam("user_id"), User.is_active)


def require_role(minimum: Role) -> Callable[[AppContext, Session, Credentials], Principal]:
    def check(ctx: Ctx, db: DB, credentials: Credentials) -> Principal:
        user_id = _token_user_id(ctx, credentials)
        # Always re-read the role: a deactivated account or changed role takes
        # effect immediately, not when the token expires.
        role = db.connection().execute(_ACTIVE_ROLE, {"user_id": user_id}).scalar_one_or_none()
        if role is None:
            raise unauthorized("account disabled or removed")
        if ROLE_RANK.get(Role(role), 0) < ROLE_RANK[minimum]:
            raise ApiError(403, "forbidden", f"requires the {minimum.value} role or higher")
        return Principal(user_id, Role(role))

    check.__name__ = f"require_{minimum.value}"
    return check


StaffUser = Annotated[Principal, Depends(require_role(Role.staff))]
ManagerUser = Annotated[Principal, Depends(require_role(Role.manager))]
AdminUser = Annotated[Principal, Depends(require_role(Role.admin))]
