from __future__ import annotations

import os
import subprocess
import sys

import pytest

from brigade_api.config import ConfigError, load_settings

GOOD = {
    "DATABASE_URL": "postgresql://app:pw@db.internal:5432/brigade",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "APP_SECRET_KEY": "s" * 40,
}


def test_minimal_config() -> None:
    settings = load_settings(GOOD)
    assert settings.database_url == "postgresql+psycopg://app:pw@db.internal:5432/brigade"
    assert settings.token_ttl_seconds == 900
    assert "pw" not in repr(settings.describe())
    assert "s" * 40 not in repr(settings)


def test_all_problems_in_one_message() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            {
                "DATABASE_URL": "mysql://x",
                "APP_SECRET_KEY": "short",
                "APP_DB_POOL_SIZE": "lots",
                "APP_ADMIN_USERNAME": "boss",
            }
        )
    message = str(info.value)
    assert message.startswith("configuration error: ")
    assert "\n" not in message
    for fragment in [
        "DATABASE_URL unsupported scheme",
        "REDIS_URL is required",
        "APP_SECRET_KEY must be at least 32",
        "APP_DB_POOL_SIZE must be an integer",
        "APP_ADMIN_USERNAME and APP_ADMIN_PASSWORD must be set together",
    ]:
        assert fragment in message


def _clean_env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), **extra}


def test_cli_reports_config_error_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "brigade_api", "check-config"],
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("brigade-api: configuration error: DATABASE_URL is required")
    assert len(result.stderr.strip().splitlines()) == 1


def test_migrate_without_dsn_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "brigade_api", "migrate"],
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "MIGRATION_DATABASE_URL is required" in result.stderr
    assert "Traceback" not in result.stderr


def test_gunicorn_config_rejects_bad_environment() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import brigade_api.gunicorn_conf"],
        env=_clean_env(**GOOD, APP_WORKERS="many"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "brigade-api: configuration error: APP_WORKERS must be an integer, got 'many'"
    )


def test_gunicorn_config_defaults() -> None:
    code = (
        "import json, brigade_api.gunicorn_conf as c; print(json.dumps([c.bind, c.workers, "
        "c.worker_class, c.graceful_timeout, c.wsgi_app]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=_clean_env(**GOOD),
        capture_output=True,
        text=True,
        check=True,
    )
    bind, workers, worker_class, graceful, wsgi_app = __import__("json").loads(result.stdout)
    assert bind == ["0.0.0.0:5000"]
    assert workers == min(os.cpu_count() or 1, 8)
    assert worker_class == "uvicorn_worker.UvicornWorker"
    assert graceful == 30
    assert wsgi_app == "brigade_api.asgi:app"
