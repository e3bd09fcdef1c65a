"""A topic left out of the group's assignment: found, shown, and a new assignment asked
for once the consumer's refreshed metadata has the topic's partitions (in the consumer's
own thread, as faust runs it)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from streams.runtime.assignment_gaps import ASK_EVERY_S, AssignmentGaps, fill_gaps, unassigned

W1, W2 = "http://127.0.0.2:6066", "http://127.0.0.3:6066"
CHANGELOGS = {W1: {"jobs-changelog": [0, 1]}, W2: {"jobs-changelog": [2, 3]}}
SOURCES = {W1: {"ingest": [0]}, W2: {"ingest": [1], "idle": []}}


def test_unassigned_names_topics_no_worker_has_a_partition_of() -> None:
    subscribed = {"jobs-changelog", "ingest", "sessions-changelog", "idle"}
    assert unassigned(subscribed, CHANGELOGS, SOURCES) == {"sessions-changelog", "idle"}
    assert unassigned({"ingest"}, CHANGELOGS, SOURCES) == set()
    assert unassigned({"ingest"}) == {"ingest"}


def test_asking_again_waits_between_requests() -> None:
    gaps = AssignmentGaps()
    assert gaps.due(0.0)
    gaps.asked_at(100.0)
    assert not gaps.due(100.0 + ASK_EVERY_S - 0.1)
    assert gaps.due(100.0 + ASK_EVERY_S) and gaps.asked == 1


class FakeKafka:
    """aiokafka's consumer as the check reads it; its metadata learns `later` topics'
    partitions at the next refresh. Records in which thread it was asked."""

    def __init__(self, subscribed: set[str], known: dict[str, set[int]],
                 later: dict[str, set[int]]) -> None:
        self.subscribed = subscribed
        self.known = dict(known)
        self.later = later
        self.refreshes = 0
        self.rejoins = 0
        self.threads: set[str] = set()
        self._client = SimpleNamespace(force_metadata_update=self._refresh,
                                       cluster=SimpleNamespace(partitions_for_topic=self.known.get))
        self._coordinator = SimpleNamespace(request_rejoin=self._rejoin)

    def subscription(self) -> set[str]:
        return self.subscribed

    async def _refresh(self) -> bool:
        self.threads.add(threading.current_thread().name)
        self.refreshes += 1
        self.known.update(self.later)
        return True

    def _rejoin(self) -> None:
        self.threads.add(threading.current_thread().name)
        self.rejoins += 1


@pytest.fixture
def consumer_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="consumer-thread", daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def app_with(kafka: FakeKafka, loop: asyncio.AbstractEventLoop, **changes: Any) -> Any:
    thread = SimpleNamespace(_ensure_consumer=lambda: kafka, thread_loop=loop)
    app = SimpleNamespace(
        rebalancing=False,
        assignor=SimpleNamespace(changelog_distribution=CHANGELOGS,
                                 external_topic_distribution=SOURCES),
        consumer=SimpleNamespace(_thread=thread),
    )
    for name, value in changes.items():
        setattr(app, name, value)
    return app


def test_a_left_out_topic_is_assigned_again_once_metadata_shows_it(
    consumer_loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    kafka = FakeKafka({"jobs-changelog", "ingest", "sessions-changelog"},
                      known={"jobs-changelog": {0, 1, 2, 3}, "ingest": {0, 1}},
                      later={})
    app, gaps = app_with(kafka, consumer_loop), AssignmentGaps()
    asyncio.run(fill_gaps(app, gaps, now=0.0))
    # Still unknown after a refresh: nothing asked, shown as a gap.
    assert gaps.topics == {"sessions-changelog"}
    assert (kafka.refreshes, kafka.rejoins, gaps.asked) == (1, 0, 0)

    kafka.later = {"sessions-changelog": {0, 1, 2, 3}}
    asyncio.run(fill_gaps(app, gaps, now=1.0))
    assert (kafka.refreshes, kafka.rejoins, gaps.asked) == (2, 1, 1)
    assert kafka.threads == {"consumer-thread"}
    # Until the new assignment arrives, asked again only after ASK_EVERY_S.
    asyncio.run(fill_gaps(app, gaps, now=2.0))
    assert (kafka.refreshes, kafka.rejoins) == (2, 1)
    asyncio.run(fill_gaps(app, gaps, now=1.0 + ASK_EVERY_S))
    assert (kafka.refreshes, kafka.rejoins) == (3, 2)

    # The new assignment has it: the gap closes, and both ends are in the log, once.
    kafka.subscribed = {"jobs-changelog", "ingest"}
    asyncio.run(fill_gaps(app, gaps, now=100.0))
    assert gaps.topics == frozenset() and kafka.refreshes == 3
    said = [r.getMessage() for r in caplog.records if "sessions-changelog" in r.getMessage()]
    assert len(said) == 2 and "no worker's assignment" in said[0]
    assert said[1] == "topics ['sessions-changelog'] are assigned again"


def test_nothing_is_asked_when_all_is_assigned_or_the_group_is_moving(
    consumer_loop: asyncio.AbstractEventLoop,
) -> None:
    complete = FakeKafka({"jobs-changelog", "ingest"}, known={}, later={})
    gaps = AssignmentGaps()
    gaps.topics = frozenset({"stale"})
    asyncio.run(fill_gaps(app_with(complete, consumer_loop), gaps, now=0.0))
    assert gaps.topics == frozenset() and complete.refreshes == 0

    gap = FakeKafka({"other"}, known={"other": {0}}, later={})
    for app in (app_with(gap, consumer_loop, rebalancing=True),
                app_with(gap, consumer_loop, assignor=SimpleNamespace(
                    changelog_distribution={}, external_topic_distribution={}))):
        asyncio.run(fill_gaps(app, AssignmentGaps(), now=0.0))
    assert (gap.refreshes, gap.rejoins) == (0, 0)


def test_health_is_not_ready_while_a_topic_is_left_out() -> None:
    from streams.web.health import readiness

    recovered = SimpleNamespace(completed=SimpleNamespace(is_set=lambda: True))
    app = SimpleNamespace(
        consumer=SimpleNamespace(assignment=lambda: [SimpleNamespace(topic="in", partition=0)]),
        rebalancing=False,
        tables=SimpleNamespace(recovery=recovered),
    )
    assert readiness(app)["ready"]  # type: ignore[arg-type]
    state = readiness(app, frozenset({"sessions-changelog"}))  # type: ignore[arg-type]
    assert not state["ready"] and state["unassigned_topics"] == ["sessions-changelog"]
