"""ASGI entry point for servers: ``brigade_api.asgi:app`` (reads the environment)."""

from brigade_api.main import create_app

app = create_app()
