"""Static front end with content-hashed asset names.

The sources in ``frontend/`` are plain HTML/CSS/JS with no build step. At start-up
each file under ``assets/`` gets a name carrying a hash of its content
(``app.css`` -> ``app.3f9c2a1b.css``) and the HTML pages are rewritten to point at
those names. Hashed assets are cached forever by browsers; pages are revalidated.
``brigade-api export-frontend DIR`` writes the same result to disk (plus a
``manifest.json``) for a web server to serve directly.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from brigade_api.errors import not_found

PAGES = {"/": "index.html", "/staff": "staff.html"}
_ASSET_REF = re.compile(r'(?P<attr>href|src)="(?P<prefix>/?assets/)(?P<name>[A-Za-z0-9._-]+)"')
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


def default_frontend_dir() -> Path | None:
    here = Path(__file__).resolve().parent
    for candidate in (here / "frontend", here.parent.parent / "frontend"):
        if (candidate / "index.html").is_file():
            return candidate
    return None


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    original: str


class FrontendBundle:
    def __init__(self, source: Path) -> None:
        self.source = source
        self.assets: dict[str, Asset] = {}
        self.manifest: dict[str, str] = {}
        assets_dir = source / "assets"
        for path in sorted(assets_dir.iterdir()) if assets_dir.is_dir() else []:
            if not path.is_file():
                continue
            body = path.read_bytes()
            digest = hashlib.sha256(body).hexdigest()[:10]
            hashed = f"{path.stem}.{digest}{path.suffix}"
            media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if media_type.startswith("text/") or path.suffix == ".js":
                media_type += "; charset=utf-8"
            self.assets[hashed] = Asset(body, media_type, path.name)
            self.manifest[path.name] = hashed
        self.pages: dict[str, bytes] = {}
        for page in sorted(set(PAGES.values())):
            html = (source / page).read_text(encoding="utf-8")
            self.pages[page] = _ASSET_REF.sub(self._rewrite, html).encode("utf-8")

    def _rewrite(self, match: re.Match[str]) -> str:
        name = match.group("name")
        hashed = self.manifest.get(name, name)
        return f'{match.group("attr")}="{match.group("prefix")}{hashed}"'

    def export(self, target: Path) -> None:
        (target / "assets").mkdir(parents=True, exist_ok=True)
        for name, asset in self.assets.items():
            (target / "assets" / name).write_bytes(asset.body)
        for page, body in self.pages.items():
            (target / page).write_bytes(body)
        manifest = {f"assets/{k}": f"assets/{v}" for k, v in self.manifest.items()}
        (target / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    def router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)

        def page_handler(page: str) -> Callable[[], Awaitable[Response]]:
            async def serve_page() -> Response:
                return Response(
                    self.pages[page],
                    media_type="text/html; charset=utf-8",
                    headers={"Cache-Control": REVALIDATE},
                )

            return serve_page

        for url, page in PAGES.items():
            router.add_api_route(url, page_handler(page), methods=["GET"])
            router.add_api_route(f"/{page}", page_handler(page), methods=["GET"])

        @router.get("/assets/{name}")
        async def serve_asset(name: str) -> Response:
            asset = self.assets.get(name)
            cache = IMMUTABLE
            if asset is None and name in self.manifest:
                # Unhashed name (handy in development): serve it, but revalidate.
                asset, cache = self.assets[self.manifest[name]], REVALIDATE
            if asset is None:
                raise not_found("asset")
            return Response(
                asset.body, media_type=asset.media_type, headers={"Cache-Control": cache}
            )

        return router
