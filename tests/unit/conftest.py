"""Fixtures of the unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import faust
import pytest

from streams.runtime import consumer


@pytest.fixture
def app() -> Iterator[faust.App]:
    """A faust app with the worker's consumer, on its own event loop, never started."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = faust.App("unit-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    consumer.install(app)
    yield app
    loop.close()
    asyncio.set_event_loop(None)
