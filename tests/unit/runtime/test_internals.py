"""The faust internals the worker's consumer relies on are named, and checked at start:
each mixin of OrderedConsumer lists the faust methods it overrides (OVERRIDES) and the
private attributes it reads (PRIVATES); install and the consumer refuse to run without
them (streams.runtime.versions.check_internals)."""

from __future__ import annotations

import asyncio
import inspect
import re

import faust
import pytest
from faust.transport.drivers import aiokafka as aiokafka_driver

from streams.runtime import assignment_gaps, stall_timer
from streams.runtime import consumer as consumer_module
from streams.runtime.consumer import OrderedConsumer, install
from streams.runtime.versions import UnsupportedRuntime, check_internals

MIXINS = [k for k in OrderedConsumer.__mro__ if k.__module__.startswith("streams.runtime.")]


def test_the_consumer_is_one_mixin_per_concern() -> None:
    assert [k.__module__.rsplit(".", 1)[1] for k in MIXINS] == [
        "consumer", "delivery_order", "cleared", "fetch", "commit_rule", "seeks",
        "fetch_wait",
    ]  # fmt: skip


def test_the_kafka_consumer_waits_at_the_broker_as_long_as_told() -> None:
    async def fetch_wait_ms(wait_s: float | None) -> int:
        app = faust.App("unit-fetch-wait", broker="kafka://127.0.0.1:1", autodiscover=False)
        install(app, wait_s)
        client = app.consumer._thread._create_worker_consumer(app.transport)
        return int(client._fetch_max_wait_ms)

    assert asyncio.run(fetch_wait_ms(0.1)) == 100
    assert asyncio.run(fetch_wait_ms(None)) == 1500  # faust's own


def test_each_override_is_a_faust_method_its_mixin_overrides() -> None:
    for mixin in MIXINS:
        for name in vars(mixin).get("OVERRIDES", ()):
            assert name in vars(mixin), (mixin, name)
            assert callable(getattr(aiokafka_driver.Consumer, name)), name
            assert vars(mixin)[name].__doc__, (mixin, name)  # says what it corrects


def test_every_private_attribute_read_is_declared() -> None:
    """A private name used in the consumer's modules or the stall guard's timer is
    either the mixins' own or declared (OVERRIDES, PRIVATES): else an upgrade that
    renames it would not be caught at start."""
    own: set[str] = set()
    for mixin in MIXINS:
        own |= {n for n in vars(mixin) if n not in vars(mixin).get("OVERRIDES", ())}
        init = vars(mixin).get("__init__")
        if init is not None:
            own |= set(re.findall(r"self\.(_\w+)(?:: [^=]+)? = ", inspect.getsource(init)))
    declared = {n.rsplit(".", 1)[-1] for n in consumer_module.privates()}
    declared |= set(consumer_module.overrides())
    used: set[str] = set()
    for module in {inspect.getmodule(m) for m in MIXINS} | {stall_timer, assignment_gaps}:
        used |= set(re.findall(r"\.(_[a-zA-Z]\w*)\b", inspect.getsource(module)))  # type: ignore[arg-type]
    # asyncio.Queue's deque: the standard library's, fixed with the Python version; and
    # aiokafka's consumer's client (aiokafka is pinned with faust).
    assert used - own - declared == {"_queue", "_client"}


def test_the_consumer_has_every_internal_it_reads(app: faust.App) -> None:
    consumer = app.consumer
    assert isinstance(consumer, OrderedConsumer)
    check_internals(consumer, consumer_module.privates(), "the consumer")
    assert "_read_offset" in consumer_module.privates()
    assert "app.topics._topics" in consumer_module.privates()  # the stall guard's
    assert "_thread.thread_loop" in consumer_module.privates()  # the assignment gaps'


def test_install_refuses_a_faust_without_a_method_it_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumer_module, "overrides", lambda: ["_drain_messages_v2"])
    app = faust.App("unit-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    with pytest.raises(UnsupportedRuntime, match="has no _drain_messages_v2"):
        install(app)


def test_the_consumer_refuses_a_faust_without_an_internal_it_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        app = faust.App("unit-test", broker="kafka://127.0.0.1:1", autodiscover=False)
        install(app)
        monkeypatch.setattr(consumer_module, "privates", lambda: ["_read_offsets"])
        with pytest.raises(UnsupportedRuntime, match="has no _read_offsets"):
            app.consumer  # noqa: B018
    finally:
        loop.close()
        asyncio.set_event_loop(None)
