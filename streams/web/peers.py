"""Ask the other workers of the group: every one for its part of a list, or the one
that owns a key for the whole answer.

Faust's assignor knows each worker by the URL it advertises (Settings.advertised_url).
A peer that cannot be reached there, or answers anything but 200, is a PeerUnavailable
naming it: the view answers 503 saying which worker failed, not 500 or a hang.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import faust
import orjson
from faust.exceptions import SameNode
from faust.web import Request, Response, View

from streams.web.auth import HasHeaders, caller_credentials

# How long a peer may take to answer; well under a client's patience, far over a view's
# usual few milliseconds.
PEER_TIMEOUT_S = 10.0


class PeerUnavailable(RuntimeError):
    """A worker of the group did not answer; the caller answers 503."""


async def ask_peers(app: faust.App, path: str, request: HasHeaders) -> list[Any]:
    """GET `path` from every other worker that owns partitions, on behalf of `request`
    (its Authorization goes along); answer their decoded JSON bodies."""
    me = str(app.conf.canonical_url).rstrip("/")
    hosts = sorted({h.rstrip("/") for h in app.router.tables_metadata()} - {me})
    headers = caller_credentials(request)
    timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)

    async def ask(host: str) -> Any:
        try:
            async with app.http_client.get(
                f"{host}{path}", headers=headers, timeout=timeout
            ) as response:
                if response.status != 200:
                    raise PeerUnavailable(f"{host}{path} answered {response.status}")
                return orjson.loads(await response.read())
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise PeerUnavailable(f"{host}{path} did not answer: {exc!r}") from None

    return list(await asyncio.gather(*(ask(h) for h in hosts)))


async def ask_owner(
    app: faust.App, table_name: str, key: str, view: View, request: Request
) -> Response | None:
    """The answer of the worker that owns `key` of the table to `request` (Faust
    forwards it with its headers, the token included); None when this worker owns it."""
    try:
        return await asyncio.wait_for(
            app.router.route_req(table_name, key.encode(), view.web, request), PEER_TIMEOUT_S
        )
    except SameNode:
        return None
    except (TimeoutError, aiohttp.ClientError) as exc:
        try:
            owner = str(app.router.key_store(table_name, key.encode()))
        except TimeoutError:  # the owner is not known yet either
            owner = "the worker"
        raise PeerUnavailable(f"{owner}, which owns {key!r}, did not answer: {exc!r}") from None
