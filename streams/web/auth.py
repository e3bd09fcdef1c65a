"""The bearer token of the web views: always for mutating calls, and for every read
too when ENGINESTREAM_API_TOKEN_FOR_READS is true.

Reads are guarded by one aiohttp middleware over every route of the worker, Faust's own
(/router/, /table/...) included, so a view added later is guarded without a line of its
own; only OPEN_ROUTES answer without the token. Requests between workers (fan-out and
forwarding) carry the caller's Authorization header: a worker never answers a caller
with more than the caller may read.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import faust
from aiohttp import web as aioweb

from streams.config.settings import Settings, SettingsError

# Routes (aiohttp's canonical patterns) that answer without the token: the readiness
# probe, which orchestrators call without credentials, and the dashboard's static page
# and files, which hold no data (their data calls carry the token).
OPEN_ROUTES = frozenset({"/health", "/dashboard", "/dashboard/static/{name}"})

BEARER = "Bearer "


class HasHeaders(Protocol):
    """Anything with request headers (aiohttp's and Faust's requests)."""

    @property
    def headers(self) -> Any: ...


def check_token(request: HasHeaders, token: str) -> tuple[int, str] | None:
    """None when the request carries the bearer token, else (status, why)."""
    if not token:
        return 403, "mutating calls are disabled: set ENGINESTREAM_API_TOKEN on the workers"
    header = request.headers.get("Authorization", "")
    if not header.startswith(BEARER):
        return 401, "missing bearer token (Authorization: Bearer <ENGINESTREAM_API_TOKEN>)"
    if not hmac.compare_digest(header[len(BEARER) :].encode(), token.encode()):
        return 403, "wrong bearer token"
    return None


def require_read_token(settings: Settings) -> None:
    """Refuse settings that ask for reads behind the token but set no token."""
    if settings.api_token_for_reads and not settings.api_token:
        raise SettingsError(
            "ENGINESTREAM_API_TOKEN_FOR_READS=true needs ENGINESTREAM_API_TOKEN set "
            "(the bearer token every read must carry)"
        )


def read_refusal(
    route: str | None, request: HasHeaders, settings: Settings
) -> tuple[int, str] | None:
    """None when a request of `route` (its canonical pattern; None when no route
    matches) may be answered, else (status, why)."""
    if not settings.api_token_for_reads or route in OPEN_ROUTES:
        return None
    return check_token(request, settings.api_token)


def caller_credentials(request: HasHeaders) -> dict[str, str]:
    """The headers a request to a peer made for `request` carries: its Authorization."""
    header = request.headers.get("Authorization")
    return {"Authorization": header} if header else {}


Handler = Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]


def read_guard(settings: Settings) -> Callable[[aioweb.Request, Handler], Awaitable[Any]]:
    """The aiohttp middleware that answers 401/403 (JSON error) to a request of a
    guarded route without the right token."""

    @aioweb.middleware
    async def guard(request: aioweb.Request, handler: Handler) -> aioweb.StreamResponse:
        resource = request.match_info.route.resource
        refused = read_refusal(resource.canonical if resource else None, request, settings)
        if refused is None:
            return await handler(request)
        status, why = refused
        headers = {"WWW-Authenticate": 'Bearer realm="enginestream"'} if status == 401 else {}
        return aioweb.json_response({"error": why}, status=status, headers=headers)

    return guard


def guard_reads(app: faust.App, settings: Settings) -> None:
    """Put every route of `app` but OPEN_ROUTES behind the token when the settings ask
    for it (SettingsError when they ask for it without a token)."""
    require_read_token(settings)
    if settings.api_token_for_reads:
        # Faust's aiohttp driver; its middlewares may change until the server starts.
        app.web.web_app.middlewares.append(read_guard(settings))  # type: ignore[attr-defined]
