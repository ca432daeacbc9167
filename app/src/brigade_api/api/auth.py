"""POST /api/v1/auth/token: username and password in, bearer token out."""

from __future__ import annotations

import logging

from sqlalchemy import select

from brigade_api.deps import DB, Ctx, Router
from brigade_api.errors import unauthorized
from brigade_api.models import User
from brigade_api.schemas import ErrorResponse, TokenOut, TokenRequest
from brigade_api.security import hash_password, needs_rehash, verify_password

router = Router(prefix="/api/v1/auth", tags=["auth"])
log = logging.getLogger("brigade.auth")


@router.post(
    "/token",
    response_model=TokenOut,
    summary="Exchange username and password for a short-lived bearer token",
    responses={
        401: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
)
def issue_token(body: TokenRequest, ctx: Ctx, db: DB) -> TokenOut:
    username = body.username.strip().lower()
    user = db.execute(select(User).where(User.username == username)).scalar_one_or_none()
    ok = verify_password(user.password_hash if user else None, body.password)
    if user is None or not ok or not user.is_active:
        log.info("login failed", extra={"username": username[:64]})
        raise unauthorized("invalid username or password")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(body.password)
        db.commit()
    log.info("login", extra={"user_id": user.id, "role": user.role})
    token = ctx.tokens.issue(user.id, user.role)
    return TokenOut(access_token=token, expires_in=ctx.tokens.ttl_seconds)
