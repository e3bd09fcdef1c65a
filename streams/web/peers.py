"""Ask every other worker of the group for its part of an answer."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import orjson


class PeerUnavailable(RuntimeError):
    """A worker of the group did not answer; the caller answers 503."""


async def ask_peers(app: faust.App, path: str) -> list[Any]:
    """GET `path` from every other worker that owns partitions (Faust's assignor
    knows their web addresses); answer their decoded JSON bodies."""
    me = str(app.conf.canonical_url).rstrip("/")
    hosts = sorted({h.rstrip("/") for h in app.router.tables_metadata()} - {me})

    async def ask(host: str) -> Any:
        async with app.http_client.get(f"{host}{path}") as response:
            if response.status != 200:
                raise PeerUnavailable(f"{host}{path} answered {response.status}")
            return orjson.loads(await response.read())

    return list(await asyncio.gather(*(ask(h) for h in hosts)))
