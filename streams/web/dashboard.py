"""GET /dashboard: a live page of the worker's JSON views, charts drawn as inline SVG.

The page (streams/web/static/dashboard.html, .js, .css; no CDN, no front-end library, no
external fonts) polls the views every 2 s: /engines and /engines/{id}/windows for the
latency percentiles and success rate per engine over time, /stats for the router's
counts and dead letters by reason, /training/stats, and — when they exist — /jobs and
/engines/{id}/status (a panel whose view answers 404 is hidden). Every SVG data point
carries data-* attributes (engine, series, window start, value) and every chart a
``data-chart`` name, so tests can compare the DOM with the views' JSON.

GET /dashboard/static/{name} serves the files of streams/web/static/ by name only: no
directories, no dot files, known extensions with their content types; anything else is
a 404.
"""

from __future__ import annotations

import re
from pathlib import Path

import faust
from faust.web import Request, Response, View

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE = "dashboard.html"

CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}

# One plain file name: starts with a letter or digit, then letters, digits, '_', '-'
# and '.', never '..' (so no separators, no parent directories, no dot files).
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def static_file(name: str, directory: Path = STATIC_DIR) -> tuple[bytes, str] | None:
    """The content and content type of the static file `name`, or None when `name` is
    not a plain file name of `directory` with a known extension (path traversal, dot
    files, directories, unknown types and missing files all answer None)."""
    if not _SAFE_NAME.match(name) or ".." in name:
        return None
    content_type = CONTENT_TYPES.get(Path(name).suffix.lower())
    if content_type is None:
        return None
    root = directory.resolve()
    path = (root / name).resolve()
    if path.parent != root or not path.is_file():
        return None
    return path.read_bytes(), content_type


def _respond(view: View, found: tuple[bytes, str] | None) -> Response:
    if found is None:
        return view.text("not found\n", status=404)
    body, content_type = found
    headers = {
        "Content-Type": content_type,
        # Always revalidated: a redeployed worker serves its new script at once.
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    return view.bytes(body, headers=headers)


def register_dashboard(app: faust.App) -> None:
    """Add GET /dashboard and GET /dashboard/static/{name} to `app`."""

    @app.page("/dashboard")
    class Dashboard(View):
        async def get(self, request: Request) -> Response:
            return _respond(self, static_file(PAGE))

    @app.page("/dashboard/static/{name}")
    class DashboardStatic(View):
        async def get(self, request: Request, name: str) -> Response:
            return _respond(self, static_file(name))
