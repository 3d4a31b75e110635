"""``/dashboard``: the coordinators' dashboard, a static page over the ``/v1/flows`` endpoints.

The page holds no query logic and no data: its script (``dashboard_assets/dashboard.js``) asks the same
REST endpoints a coordinator's own tools would, with the token the coordinator pastes into it (kept in the
tab's sessionStorage and sent as a bearer header, never put in a URL or a cookie, so the page needs no
session or CSRF handling of its own). Left out of the OpenAPI schema: it is a page, not an API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

router = APIRouter(include_in_schema=False)

ASSETS = Path(__file__).parent / "dashboard_assets"
# Only these files are served (an allowlist, so a path can never reach anything else in the package).
STATIC = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "echarts.min.js": "text/javascript; charset=utf-8",
    "municipalities.json": "application/json; charset=utf-8",  # SCB codes → names, for the filter
}
# Scripts only from the hub itself (the page has no inline script), nothing fetched from elsewhere, no
# framing. Inline style *attributes* are allowed because ECharts writes its tooltips as HTML with them;
# style elements and sheets still come only from 'self'.
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",  # for browsers that predate frame-ancestors
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@router.get("/dashboard", response_class=HTMLResponse)
async def page() -> HTMLResponse:
    return HTMLResponse((ASSETS / "dashboard.html").read_text(encoding="utf-8"), headers=PAGE_HEADERS)


@router.get("/dashboard/static/{name}")
async def static(name: str) -> FileResponse:
    media_type = STATIC.get(name)
    if media_type is None:
        raise HTTPException(404, "No such file.")
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
    return FileResponse(ASSETS / name, media_type=media_type, headers=headers)
