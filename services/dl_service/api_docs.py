"""The API reference page (/docs), served with every script and style sheet it needs.

FastAPI's own pages fetch Swagger UI and ReDoc from a public CDN, so on an isolated network they
stay blank. This one loads the Swagger UI packaged in ``fastapi-offline`` from this service, and
its Content-Security-Policy lets nothing come from anywhere else. ReDoc is not offered: its page
shows a logo from Redocly's CDN that no option turns off.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from services.dl_service.api import PAGE_HEADERS

router = APIRouter(include_in_schema=False)
ASSETS_URL = "/docs/assets"
DOCS_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def assets_folder() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def page_policy(html: str) -> str:
    """The web page's policy, widened by exactly what Swagger UI needs: the page's own inline start-up
    script, pinned by its hash, and inline styles on its widgets. Nothing from another origin."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in INLINE_SCRIPT.findall(html)
    )
    policy = PAGE_HEADERS["Content-Security-Policy"]
    return policy.replace("script-src 'self'", f"script-src 'self' {hashes}").replace(
        "style-src 'self'", "style-src 'self' 'unsafe-inline'"
    )


@cache
def swagger_page(title: str, openapi_url: str) -> tuple[str, dict[str, str]]:
    """The page and its headers, made once per title and URL (the policy hashes the page's script)."""
    html = bytes(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - API reference",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        ).body
    ).decode()
    return html, {**PAGE_HEADERS, "Content-Security-Policy": page_policy(html)}


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    openapi_url = request.scope.get("root_path", "") + (request.app.openapi_url or "/openapi.json")
    html, headers = swagger_page(request.app.title, openapi_url)
    return HTMLResponse(html, headers=headers)


@router.get(ASSETS_URL + "/{name}")
async def docs_asset(name: str) -> FileResponse:
    if name not in DOCS_ASSETS:
        raise HTTPException(404, f"no API reference asset {name!r}")
    # Versioned with the package: a day in caches is safe, and spares the 1.5 MB on every visit.
    headers = {**PAGE_HEADERS, "Cache-Control": "public, max-age=86400"}
    return FileResponse(assets_folder() / name, media_type=DOCS_ASSETS[name], headers=headers)
