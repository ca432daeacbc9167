"""Create the first admin account from configuration, if it is missing."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, sessionmaker

from brigade_api.models import Role, User
from brigade_api.security import hash_password

log = logging.getLogger("brigade.bootstrap")


def ensure_admin(session_factory: sessionmaker[Session], username: str, password: str) -> bool:
    """Idempotent: returns True if the account was created, False if it existed.

    An existing account is left untouched (its password is not reset), so the
    configured password only matters the first time. Safe to run from several
    workers at once: the insert is ``ON CONFLICT DO NOTHING``.
    """
    username = username.lower()
    with session_factory() as session:
        exists = session.execute(select(User.id).where(User.username == username)).first()
        if exists is not None:
            return False
        created = session.execute(
            pg_insert(User)
            .values(
                username=username,
                password_hash=hash_password(password),
                role=Role.admin.value,
                is_active=True,
            )
            .on_conflict_do_nothing(index_elements=[User.username])
            .returning(User.id)
        ).scalar_one_or_none()
        session.commit()
    if created is not None:
        log.info("created initial admin account", extra={"username": username})
    return created is not None
