"""Ask every other worker of the group for its part of an answer."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import orjson

from streams.web.auth import HasHeaders, caller_credentials


class PeerUnavailable(RuntimeError):
    """A worker of the group did not answer; the caller answers 503."""


async def ask_peers(app: faust.App, path: str, request: HasHeaders) -> list[Any]:
    """GET `path` from every other worker that owns partitions (Faust's assignor
    knows the addresses they advertise), on behalf of `request` (its Authorization
    goes along); answer their decoded JSON bodies."""
    me = str(app.conf.canonical_url).rstrip("/")
    hosts = sorted({h.rstrip("/") for h in app.router.tables_metadata()} - {me})
    headers = caller_credentials(request)

    async def ask(host: str) -> Any:
        async with app.http_client.get(f"{host}{path}", headers=headers) as response:
            if response.status != 200:
                raise PeerUnavailable(f"{host}{path} answered {response.status}")
            return orjson.loads(await response.read())

    return list(await asyncio.gather(*(ask(h) for h in hosts)))
