"""Staff accounts: admins manage them; everyone can see and re-key their own."""

from __future__ import annotations

from fastapi import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from brigade_api.api.common import AUTHED, WITH_404, WITH_409, UserId
from brigade_api.deps import DB, AdminUser, CurrentUser, Router
from brigade_api.errors import ApiError, conflict, field_error, not_found
from brigade_api.models import Role, User
from brigade_api.schemas import PasswordChange, UserCreate, UserOut, UserUpdate
from brigade_api.security import hash_password, verify_password

router = Router(prefix="/api/v1/users", tags=["users"])


def _user(db: Session, user_id: int) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise not_found("user")
    return user


@router.get("/me", response_model=UserOut, responses=AUTHED)
def me(caller: CurrentUser) -> User:
    return caller.account


@router.post("/me/password", status_code=204, response_class=Response, responses=AUTHED)
def change_own_password(body: PasswordChange, caller: CurrentUser, db: DB) -> Response:
    user = caller.account
    if not verify_password(user.password_hash, body.current_password):
        raise field_error("current_password", "does not match", status_code=422)
    user.password_hash = hash_password(body.new_password)
    db.commit()
    return Response(status_code=204)


@router.get("", response_model=list[UserOut], responses=AUTHED)
def list_users(_: AdminUser, db: DB) -> list[User]:
    return list(db.execute(select(User).order_by(User.username)).scalars())


@router.post("", response_model=UserOut, status_code=201, responses=WITH_409)
def create_user(body: UserCreate, _: AdminUser, db: DB) -> User:
    if db.execute(select(User.id).where(User.username == body.username)).first():
        raise field_error("username", "already taken", status_code=409)
    user = User(
        username=body.username,
        password_hash=hash_password(body.password),
        role=body.role.value,
        is_active=True,
    )
    db.add(user)
    db.commit()
    db.refresh(user)
    return user


@router.get("/{user_id}", response_model=UserOut, responses=WITH_404)
def get_user(user_id: UserId, _: AdminUser, db: DB) -> User:
    return _user(db, user_id)


@router.patch("/{user_id}", response_model=UserOut, responses=WITH_409)
def update_user(user_id: UserId, body: UserUpdate, admin: AdminUser, db: DB) -> User:
    user = _user(db, user_id)
    if user.id == admin.id and (
        (body.role is not None and body.role != Role.admin) or body.is_active is False
    ):
        raise conflict("admins cannot demote or deactivate themselves")
    if body.password is not None:
        user.password_hash = hash_password(body.password)
    if body.role is not None:
        user.role = body.role.value
    if body.is_active is not None:
        user.is_active = body.is_active
    db.commit()
    db.refresh(user)
    return user


@router.delete("/{user_id}", status_code=204, response_class=Response, responses=WITH_409)
def delete_user(user_id: UserId, admin: AdminUser, db: DB) -> Response:
    user = _user(db, user_id)
    if user.id == admin.id:
        raise ApiError(409, "conflict", "admins cannot delete themselves")
    db.delete(user)
    db.commit()
    return Response(status_code=204)
