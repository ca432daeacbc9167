"""The public menu and its Redis cache.

Cache keys carry the menu revision, a counter in PostgreSQL that every menu change
increments in the same transaction. A reader first reads the revision (one
primary-key lookup) and then the key for that revision, so:

* a change is visible immediately, on every host, even if Redis missed the
  invalidation while it was down (the old key is simply never asked for again);
* a slow reader cannot put an old menu back under the new key.

Old keys are deleted on a best-effort basis and expire by TTL anyway.
"""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.orm import Session, selectinload

from brigade_api.context import AppContext
from brigade_api.models import MenuCategory
from brigade_api.schemas import PublicMenu, PublicMenuCategory

CACHE_NAME = "menu"
KEY_PREFIX = "brigade:menu:v1:"


def current_revision(db: Session) -> int:
    value = db.execute(text("SELECT revision FROM menu_revision WHERE id = 1")).scalar()
    return int(value or 0)


def bump_revision(db: Session) -> int:
    """Increment the revision inside the caller's transaction; returns the old one."""
    new = db.execute(
        text(
            "INSERT INTO menu_revision (id, revision) VALUES (1, 1) "
            "ON CONFLICT (id) DO UPDATE SET revision = menu_revision.revision + 1, "
            "updated_at = now() RETURNING revision"
        )
    ).scalar_one()
    return int(new) - 1


def build_public_menu(db: Session, revision: int) -> PublicMenu:
    categories = (
        db.execute(
            select(MenuCategory)
            .options(selectinload(MenuCategory.items))
            .order_by(MenuCategory.position, MenuCategory.id)
        )
        .scalars()
        .all()
    )
    return PublicMenu(
        revision=revision,
        categories=[PublicMenuCategory.model_validate(c) for c in categories],
    )


def public_menu_json(ctx: AppContext, db: Session) -> tuple[bytes, str]:
    """The serialised public menu and whether it came from the cache (HIT/MISS)."""
    revision = current_revision(db)
    key = f"{KEY_PREFIX}{revision}"
    cached = ctx.cache.get(key, name=CACHE_NAME)
    if cached is not None:
        return cached, "HIT"
    body = build_public_menu(db, revision).model_dump_json().encode()
    ctx.cache.set(key, body, ctx.settings.menu_cache_ttl)
    return body, "MISS"


def invalidate(ctx: AppContext, old_revision: int) -> None:
    ctx.cache.delete(f"{KEY_PREFIX}{old_revision}")
