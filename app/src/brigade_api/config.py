"""Configuration from environment variables.

Every setting is read from the environment once, validated, and turned into an
immutable ``Settings`` object. A bad or missing value raises ``ConfigError``
whose message names every offending variable on one line, so an operator sees
one clear sentence instead of a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MIN_SECRET_LENGTH = 32
MIN_ADMIN_PASSWORD_LENGTH = 12


class ConfigError(Exception):
    """Raised when the environment does not describe a usable configuration."""


def _normalise_pg_url(value: str) -> str:
    """Accept libpq-style URLs and point SQLAlchemy at psycopg 3."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        raise ValueError("must be a URL like postgresql://user:password@host:5432/dbname")
    if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    raise ValueError(f"unsupported scheme {scheme!r}; use postgresql://")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    secret_key: str = field(repr=False)
    migration_database_url: str | None = field(default=None, repr=False)
    runtime_db_role: str | None = None
    release_id: str = "unknown"
    admin_username: str | None = None
    admin_password: str | None = field(default=None, repr=False)
    token_ttl_seconds: int = 900
    log_level: str = "INFO"
    db_pool_size: int = 5
    db_max_overflow: int = 5
    db_pool_timeout: float = 5.0
    db_connect_timeout: int = 3
    db_statement_timeout_ms: int = 5000
    redis_socket_timeout: float = 0.25
    redis_retry_after: float = 5.0
    menu_cache_ttl: int = 300
    serve_frontend: bool = True
    frontend_dir: str | None = None
    drain_file: str | None = None
    shutdown_delay: float = 2.0

    def describe(self) -> dict[str, Any]:
        """A loggable view with secrets redacted."""
        return {
            "database_url": _redact(self.database_url),
            "redis_url": _redact(self.redis_url),
            "release_id": self.release_id,
            "token_ttl_seconds": self.token_ttl_seconds,
            "db_pool_size": self.db_pool_size,
            "db_max_overflow": self.db_max_overflow,
            "menu_cache_ttl": self.menu_cache_ttl,
            "admin_bootstrap": self.admin_username is not None,
        }


class _Reader:
    """Collects every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def required(self, name: str) -> str:
        value = self.raw(name)
        if value is None:
            self.errors.append(f"{name} is required")
            return ""
        return value

    def pg_url(self, name: str, *, required: bool) -> str | None:
        value = self.required(name) if required else self.raw(name)
        if not value:
            return None
        try:
            return _normalise_pg_url(value)
        except ValueError as exc:
            self.errors.append(f"{name} {exc}")
            return None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            self.errors.append(f"{name} must be an integer, got {value!r}")
            return default
        if not low <= number <= high:
            self.errors.append(f"{name} must be between {low} and {high}, got {number}")
            return default
        return number

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            self.errors.append(f"{name} must be a number, got {value!r}")
            return default
        if not low <= number <= high:
            self.errors.append(f"{name} must be between {low} and {high}, got {number}")
            return default
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        self.errors.append(f"{name} must be true or false, got {value!r}")
        return default


def load_settings(env: Mapping[str, str] | None = None, *, require_app: bool = True) -> Settings:
    """Build ``Settings`` from ``env`` (default: ``os.environ``).

    ``require_app=False`` is for CLI commands that only need the migration DSN.
    """
    r = _Reader(os.environ if env is None else env)

    database_url = r.pg_url("DATABASE_URL", required=require_app) or ""
    migration_url = r.pg_url("MIGRATION_DATABASE_URL", required=False)
    redis_url = r.required("REDIS_URL") if require_app else (r.raw("REDIS_URL") or "")
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        r.errors.append("REDIS_URL must start with redis://, rediss:// or unix://")

    secret = r.required("APP_SECRET_KEY") if require_app else (r.raw("APP_SECRET_KEY") or "")
    if require_app and secret and len(secret) < MIN_SECRET_LENGTH:
        r.errors.append(f"APP_SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters")

    admin_user = r.raw("APP_ADMIN_USERNAME")
    admin_password = r.env.get("APP_ADMIN_PASSWORD") or None
    if (admin_user is None) != (admin_password is None):
        r.errors.append("APP_ADMIN_USERNAME and APP_ADMIN_PASSWORD must be set together")
    if admin_user is not None:
        from brigade_api.schemas import USERNAME_RE  # local: avoid a cycle at import

        if not USERNAME_RE.fullmatch(admin_user.lower()):
            r.errors.append(
                "APP_ADMIN_USERNAME must be 3-64 characters of a-z, 0-9, '.', '_' or '-'"
            )
    if admin_password is not None and len(admin_password) < MIN_ADMIN_PASSWORD_LENGTH:
        r.errors.append(
            f"APP_ADMIN_PASSWORD must be at least {MIN_ADMIN_PASSWORD_LENGTH} characters"
        )

    log_level = (r.raw("APP_LOG_LEVEL") or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        r.errors.append("APP_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR")
        log_level = "INFO"

    runtime_role = r.raw("APP_DB_RUNTIME_ROLE")
    if runtime_role is not None and not runtime_role.replace("_", "").isalnum():
        r.errors.append("APP_DB_RUNTIME_ROLE must be a plain role name (letters, digits, _)")

    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        secret_key=secret,
        migration_database_url=migration_url,
        runtime_db_role=runtime_role,
        release_id=r.raw("BRIGADE_RELEASE_ID") or "unknown",
        admin_username=admin_user.lower() if admin_user else None,
        admin_password=admin_password,
        token_ttl_seconds=r.integer("APP_TOKEN_TTL_SECONDS", 900, 60, 86400),
        log_level=log_level,
        db_pool_size=r.integer("APP_DB_POOL_SIZE", 5, 1, 100),
        db_max_overflow=r.integer("APP_DB_MAX_OVERFLOW", 5, 0, 100),
        db_pool_timeout=r.number("APP_DB_POOL_TIMEOUT", 5.0, 0.1, 60.0),
        db_connect_timeout=r.integer("APP_DB_CONNECT_TIMEOUT", 3, 1, 60),
        db_statement_timeout_ms=r.integer("APP_DB_STATEMENT_TIMEOUT_MS", 5000, 100, 600000),
        redis_socket_timeout=r.number("APP_REDIS_SOCKET_TIMEOUT", 0.25, 0.01, 10.0),
        redis_retry_after=r.number("APP_REDIS_RETRY_AFTER", 5.0, 0.0, 300.0),
        menu_cache_ttl=r.integer("APP_MENU_CACHE_TTL", 300, 1, 86400),
        serve_frontend=r.boolean("APP_SERVE_FRONTEND", True),
        frontend_dir=r.raw("APP_FRONTEND_DIR"),
        drain_file=r.raw("APP_DRAIN_FILE"),
        shutdown_delay=r.number("APP_SHUTDOWN_DELAY", 2.0, 0.0, 60.0),
    )
    if r.errors:
        raise ConfigError("configuration error: " + "; ".join(r.errors))
    return settings
