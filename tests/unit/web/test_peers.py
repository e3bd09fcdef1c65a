"""Asking the other workers (streams.web.peers): the caller's token goes along, and a
peer that refuses, cannot be reached or hangs is a PeerUnavailable naming it."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from faust.exceptions import SameNode

from streams.web import peers
from streams.web.peers import PeerUnavailable, ask_owner, ask_peers

ME = "http://127.0.0.2:6066"


def unused_url() -> str:
    """A URL nothing listens on (a port bound, never listened to)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    unused_url.keep = sock  # type: ignore[attr-defined]  # held: nobody else takes it
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def fake_app(hosts: list[str], client: aiohttp.ClientSession, router: Any = None) -> Any:
    """What ask_peers and ask_owner use of a faust app."""
    metadata = {h: {"t-jobs-changelog": [0]} for h in [ME, *hosts]}
    router = router or SimpleNamespace(tables_metadata=lambda: metadata)
    return SimpleNamespace(conf=SimpleNamespace(canonical_url=ME), router=router,
                           http_client=client)


def caller(authorization: str | None) -> Any:
    return SimpleNamespace(headers={"Authorization": authorization} if authorization else {})


async def peer_server(seen: list[str | None], status: int = 200,
                      delay: float = 0.0) -> TestServer:
    async def jobs(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        await asyncio.sleep(delay)
        return web.json_response({"jobs": [request.path_qs]}, status=status)

    app = web.Application()
    app.router.add_get("/jobs", jobs)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def test_peers_get_the_callers_token_and_not_this_worker() -> None:
    async def run() -> tuple[list[Any], list[str | None]]:
        seen: list[str | None] = []
        servers = [await peer_server(seen) for _ in range(2)]
        try:
            async with aiohttp.ClientSession() as client:
                app = fake_app([str(s.make_url("")).rstrip("/") for s in servers], client)
                answers = await ask_peers(app, "/jobs?local=1", caller("Bearer t0k"))
        finally:
            for server in servers:
                await server.close()
        return answers, seen

    answers, seen = asyncio.run(run())
    assert answers == [{"jobs": ["/jobs?local=1"]}] * 2  # two peers, not this worker
    assert seen == ["Bearer t0k"] * 2


def test_no_token_asked_none_sent() -> None:
    async def run() -> list[str | None]:
        seen: list[str | None] = []
        server = await peer_server(seen)
        try:
            async with aiohttp.ClientSession() as client:
                app = fake_app([str(server.make_url("")).rstrip("/")], client)
                await ask_peers(app, "/jobs?local=1", caller(None))
        finally:
            await server.close()
        return seen

    assert asyncio.run(run()) == [None]


@pytest.mark.parametrize("problem", ["refused", "unreachable", "hangs"])
def test_a_failing_peer_is_named(problem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "PEER_TIMEOUT_S", 0.3)

    async def run() -> str:
        seen: list[str | None] = []
        server = await peer_server(seen, status=401 if problem == "refused" else 200,
                                   delay=5.0 if problem == "hangs" else 0.0)
        host = unused_url() if problem == "unreachable" else str(server.make_url("")).rstrip("/")
        try:
            async with aiohttp.ClientSession() as client:
                with pytest.raises(PeerUnavailable) as raised:
                    await ask_peers(fake_app([host], client), "/jobs?local=1", caller(None))
        finally:
            await server.close()
        message = str(raised.value)
        assert message.startswith(f"{host}/jobs?local=1 "), message
        return message

    message = asyncio.run(run())
    assert ("answered 401" in message) is (problem == "refused")
    assert ("did not answer" in message) is (problem != "refused")


class Router:
    """route_req as Faust's router behaves for a key: forwarded, here, or failing."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    async def route_req(self, table: str, key: bytes, web: Any, request: Any) -> Any:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        if self.outcome == "hang":
            await asyncio.sleep(5)
        return self.outcome

    def key_store(self, table: str, key: bytes) -> str:
        return "http://127.0.0.3:6066"


def owner_answer(outcome: Any) -> Any:
    view = SimpleNamespace(web=None)
    app = fake_app([], None, router=Router(outcome))  # type: ignore[arg-type]
    return asyncio.run(ask_owner(app, "jobs", "job-1", view, caller(None)))  # type: ignore[arg-type]


def test_owner_answers_or_this_worker_does() -> None:
    assert owner_answer("the owner's answer") == "the owner's answer"
    assert owner_answer(SameNode()) is None


@pytest.mark.parametrize("outcome", [aiohttp.ClientConnectionError("refused"), "hang"])
def test_an_owner_that_does_not_answer_is_named(
    outcome: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "PEER_TIMEOUT_S", 0.3)
    with pytest.raises(PeerUnavailable, match=r"^http://127\.0\.0\.3:6066, which owns 'job-1'"):
        owner_answer(outcome)
