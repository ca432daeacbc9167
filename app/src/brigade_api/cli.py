"""``brigade-api``: migrations, admin bootstrap, serving and maintenance.

Commands exit with status 2 and a single ``brigade-api: configuration error: ...``
line when the environment is incomplete.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from sqlalchemy.exc import SQLAlchemyError

from brigade_api import __version__
from brigade_api.config import ConfigError, Settings, load_settings


def _fail(message: str, code: int = 2) -> int:
    print(f"brigade-api: {message}", file=sys.stderr)
    return code


def _cli_logging() -> None:
    """Plain progress lines ("Running upgrade ...") for interactive commands."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def cmd_migrate(args: argparse.Namespace) -> int:
    from brigade_api import migrate

    _cli_logging()
    settings = load_settings(require_app=False)
    if not settings.migration_database_url:
        raise ConfigError("configuration error: MIGRATION_DATABASE_URL is required for migrate")
    migrate.upgrade(settings.migration_database_url, args.revision)
    if settings.runtime_db_role:
        migrate.grant_runtime_role(settings.migration_database_url, settings.runtime_db_role)
        print(f"granted runtime privileges to role {settings.runtime_db_role}")
    print(f"database at revision {migrate.current(settings.migration_database_url)}")
    return 0


def cmd_downgrade(args: argparse.Namespace) -> int:
    from brigade_api import migrate

    _cli_logging()
    settings = load_settings(require_app=False)
    if not settings.migration_database_url:
        raise ConfigError("configuration error: MIGRATION_DATABASE_URL is required")
    migrate.downgrade(settings.migration_database_url, args.revision)
    print(f"database at revision {migrate.current(settings.migration_database_url)}")
    return 0


def cmd_current(_: argparse.Namespace) -> int:
    from brigade_api import migrate

    settings = load_settings(require_app=False)
    url = settings.migration_database_url or settings.database_url
    if not url:
        raise ConfigError("configuration error: MIGRATION_DATABASE_URL or DATABASE_URL is required")
    print(migrate.current(url) or "none")
    print(f"head: {migrate.head()}")
    return 0


def cmd_create_admin(args: argparse.Namespace) -> int:
    from brigade_api.bootstrap import ensure_admin
    from brigade_api.db import make_engine, make_session_factory
    from brigade_api.schemas import USERNAME_RE

    settings = load_settings(require_app=False)
    url = settings.database_url or settings.migration_database_url
    if not url:
        raise ConfigError("configuration error: DATABASE_URL is required")
    username = (args.username or settings.admin_username or "").lower()
    password = settings.admin_password
    if not username:
        raise ConfigError("configuration error: APP_ADMIN_USERNAME (or --username) is required")
    if not USERNAME_RE.fullmatch(username):
        raise ConfigError("configuration error: admin username must be 3-64 of a-z 0-9 . _ -")
    if password is None:
        if not sys.stdin.isatty():
            raise ConfigError("configuration error: APP_ADMIN_PASSWORD is required")
        password = getpass.getpass(f"password for {username}: ")
    if len(password) < 12:
        raise ConfigError("configuration error: the admin password needs 12+ characters")
    engine = make_engine(settings, url=url)
    try:
        created = ensure_admin(make_session_factory(engine), username, password)
    finally:
        engine.dispose()
    print(f"admin {username} {'created' if created else 'already exists'}")
    return 0


def cmd_check_config(_: argparse.Namespace) -> int:
    settings = load_settings()
    for key, value in settings.describe().items():
        print(f"{key}: {value}")
    return 0


def cmd_serve(args: argparse.Namespace) -> NoReturn:
    load_settings()  # fail fast with one clear line
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or "gunicorn"
    argv = [gunicorn, "-c", "python:brigade_api.gunicorn_conf", *args.gunicorn_args]
    os.execv(gunicorn, argv)  # noqa: S606 - replaces this process by design


def cmd_export_frontend(args: argparse.Namespace) -> int:
    from brigade_api.frontend import FrontendBundle, default_frontend_dir

    source = default_frontend_dir()
    if source is None:
        return _fail("front end sources not found in the package", 1)
    FrontendBundle(source).export(Path(args.outdir))
    print(f"front end written to {args.outdir}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from sqlalchemy import text

    from brigade_api.db import make_engine

    settings: Settings = load_settings(require_app=False)
    url = settings.database_url or settings.migration_database_url
    if not url:
        raise ConfigError("configuration error: DATABASE_URL is required")
    engine = make_engine(settings, url=url)
    try:
        with engine.begin() as conn:
            result = conn.execute(
                text(
                    "DELETE FROM idempotency_keys"
                    " WHERE created_at < now() - make_interval(hours => :h)"
                ),
                {"h": args.older_than_hours},
            )
    finally:
        engine.dispose()
    print(f"deleted {result.rowcount} idempotency keys")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="brigade-api", description=__doc__)
    parser.add_argument("--version", action="version", version=f"brigade-api {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="apply migrations with MIGRATION_DATABASE_URL")
    p.add_argument("--revision", default="head")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("downgrade", help="revert migrations (development only)")
    p.add_argument("revision")
    p.set_defaults(func=cmd_downgrade)

    p = sub.add_parser("current", help="show the database's schema revision")
    p.set_defaults(func=cmd_current)

    p = sub.add_parser("create-admin", help="create the admin account if missing")
    p.add_argument("--username", help="default: APP_ADMIN_USERNAME")
    p.set_defaults(func=cmd_create_admin)

    p = sub.add_parser("check-config", help="validate the environment and print it (redacted)")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("serve", help="run gunicorn with the packaged configuration")
    p.add_argument("gunicorn_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export-frontend", help="write the hashed static front end to OUTDIR")
    p.add_argument("outdir")
    p.set_defaults(func=cmd_export_frontend)

    p = sub.add_parser("prune-idempotency-keys", help="delete old Idempotency-Key records")
    p.add_argument("--older-than-hours", type=int, default=72)
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=lambda _: print(__version__) or 0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        return _fail(str(exc))
    except SQLAlchemyError as exc:
        first_line = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return _fail(f"database error: {first_line}", 1)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
