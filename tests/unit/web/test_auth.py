"""The bearer token of the web views (streams.web.auth): the rule, and the worker's whole
app — every route it serves, Faust's own included — behind it when reads need it."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.config.settings import Settings, SettingsError
from streams.config.topics import TopicNames
from streams.runtime.worker import build_worker_app
from streams.web.auth import (
    OPEN_ROUTES,
    caller_credentials,
    check_token,
    guard_reads,
    read_refusal,
    require_read_token,
)

TOKEN = "s3cret-token-value-4f1d"


def request(authorization: str | None = None) -> Any:
    return SimpleNamespace(headers={} if authorization is None else
                           {"Authorization": authorization})


def settings(tmp: Path | None = None, **env: str) -> Settings:
    base = {"ENGINESTREAM_DATA_DIR": str(tmp or "data"), "ENGINESTREAM_API_TOKEN": TOKEN}
    return Settings.from_env({**base, **env})


# ---- the rule ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token", "status"),
    [
        (f"Bearer {TOKEN}", TOKEN, None),
        (None, TOKEN, 401),
        ("", TOKEN, 401),
        (f"Basic {TOKEN}", TOKEN, 401),
        (f"bearer {TOKEN}", TOKEN, 401),
        ("Bearer wrong", TOKEN, 403),
        (f"Bearer {TOKEN[:-1]}", TOKEN, 403),  # a prefix is not the token
        (f"Bearer {TOKEN}x", TOKEN, 403),
        ("Bearer ", TOKEN, 403),
        (f"Bearer {TOKEN}", "", 403),  # no token configured: refused whatever is sent
        (None, "", 403),
    ],
)
def test_check_token(header: str | None, token: str, status: int | None) -> None:
    refused = check_token(request(header), token)
    assert (refused[0] if refused else None) == status
    if refused:
        assert TOKEN not in refused[1]  # the reason never echoes a token


def test_reads_are_open_unless_the_settings_close_them() -> None:
    open_reads = settings()
    for route in ["/jobs", "/metrics", "/table/{name}/", None]:
        assert read_refusal(route, request(), open_reads) is None


@pytest.mark.parametrize("route", ["/jobs", "/jobs/{job_id}", "/engines", "/stats",
                                   "/metrics", "/router/", "/table/{name}/{key}/", "/", None])
def test_closed_reads_need_the_token(route: str | None) -> None:
    closed = settings(ENGINESTREAM_API_TOKEN_FOR_READS="true")
    missing = check_token(request(), TOKEN)
    assert missing is not None and missing[0] == 401
    assert read_refusal(route, request(), closed) == missing
    assert read_refusal(route, request("Bearer nope"), closed) == (403, "wrong bearer token")
    assert read_refusal(route, request(f"Bearer {TOKEN}"), closed) is None


def test_health_and_the_dashboard_page_stay_open() -> None:
    closed = settings(ENGINESTREAM_API_TOKEN_FOR_READS="true")
    assert {"/health", "/dashboard", "/dashboard/static/{name}"} == OPEN_ROUTES
    for route in OPEN_ROUTES:
        assert read_refusal(route, request(), closed) is None


def test_reads_behind_no_token_are_refused_at_start() -> None:
    with pytest.raises(SettingsError, match="ENGINESTREAM_API_TOKEN set"):
        require_read_token(settings(ENGINESTREAM_API_TOKEN="",
                                    ENGINESTREAM_API_TOKEN_FOR_READS="true"))
    require_read_token(settings(ENGINESTREAM_API_TOKEN_FOR_READS="true"))
    require_read_token(settings(ENGINESTREAM_API_TOKEN=""))  # reads open: no token needed


def test_peers_are_asked_with_the_callers_credentials() -> None:
    assert caller_credentials(request(f"Bearer {TOKEN}")) == {"Authorization": f"Bearer {TOKEN}"}
    assert caller_credentials(request()) == {}


def test_the_worker_command_refuses_to_start_in_one_line() -> None:
    env = {**os.environ, "ENGINESTREAM_API_TOKEN_FOR_READS": "true",
           "ENGINESTREAM_API_TOKEN": "", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    result = subprocess.run([sys.executable, "-m", "streams.cli", "worker"], env=env,
                            capture_output=True, text=True, timeout=60)
    # 2, a setting's error; an unreachable broker would be 1: refused before connecting.
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ENGINESTREAM_API_TOKEN" in lines[0], result.stderr


# ---- the worker's app ----------------------------------------------------------------


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(None)


def worker_app(worker_settings: Settings) -> faust.App:
    """The worker's app with every view registered, never started (no broker)."""
    names = TopicNames(worker_settings.topic_prefix)
    partitions = {s.name: s.partitions for s in names.specs(worker_settings.partitions)}
    app = build_worker_app(worker_settings, partitions)
    app.web.init_server()
    return app


def aiohttp_app(app: faust.App) -> Any:
    """The aiohttp application behind Faust's web driver."""
    return cast(Any, app.web).web_app


def get_routes(app: faust.App) -> list[str]:
    """Every GET route's pattern, with a value for each placeholder."""
    patterns = {r.resource.canonical for r in aiohttp_app(app).router.routes()
                if r.method == "GET" and r.resource is not None}
    return sorted(re.sub(r"\{[^}]+\}", "x", p) for p in patterns)


async def answers(app: faust.App, paths: list[str],
                  authorization: str | None) -> dict[str, tuple[int, str]]:
    headers = {"Authorization": authorization} if authorization else {}
    found = {}
    async with TestClient(TestServer(aiohttp_app(app))) as client:
        for path in paths:
            async with client.get(path, headers=headers) as response:
                found[path] = (response.status, await response.text())
    return found


def test_every_route_but_the_open_ones_needs_the_token(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    app = worker_app(settings(tmp_path, ENGINESTREAM_API_TOKEN_FOR_READS="true"))
    paths = get_routes(app)
    # Faust's own views are there too, and guarded: they show table contents.
    assert {"/jobs", "/metrics", "/router/", "/table/x/x/", "/engines/x/windows"} <= set(paths)
    opened = {"/health", "/dashboard", "/dashboard/static/x"}
    assert opened <= set(paths)
    guarded = [p for p in paths if p not in opened] + ["/no/such/view"]

    bare = loop.run_until_complete(answers(app, guarded, None))
    assert {p: s for p, (s, _) in bare.items() if s != 401} == {}
    assert all('"missing bearer token' in body for _, body in bare.values())
    wrong = loop.run_until_complete(answers(app, guarded, "Bearer nope"))
    assert {p: s for p, (s, _) in wrong.items() if s != 403} == {}

    # The open ones answer without it (health says not ready: nothing is assigned).
    free = loop.run_until_complete(
        answers(app, ["/health", "/dashboard", "/dashboard/static/dashboard.js"], None))
    assert [s for s, _ in free.values()] == [503, 200, 200]
    assert '"advertised_url":"http://127.0.0.1:6066"' in free["/health"][1]

    # With the token, views that need no consumer answer; none of them shows the token.
    served = loop.run_until_complete(
        answers(app, ["/", "/windows/stats", "/health"], f"Bearer {TOKEN}"))
    assert [s for s, _ in served.values()] == [200, 200, 503]
    assert [p for p, (_, body) in {**served, **free}.items() if TOKEN in body] == []


def test_open_reads_need_no_token(loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    app = worker_app(settings(tmp_path))
    served = loop.run_until_complete(answers(app, ["/", "/windows/stats"], None))
    assert [s for s, _ in served.values()] == [200, 200]


def test_the_app_is_not_built_with_reads_behind_no_token(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    no_token = settings(tmp_path, ENGINESTREAM_API_TOKEN="",
                        ENGINESTREAM_API_TOKEN_FOR_READS="true")
    app = faust.App("auth-unit", broker="kafka://127.0.0.1:1", autodiscover=False)
    with pytest.raises(SettingsError):
        guard_reads(app, no_token)
