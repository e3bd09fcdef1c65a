"""A topic left out of the group's assignment: found, shown, and the consumer's metadata
refreshed (in the consumer's own thread, as faust runs it) until the leader's refresh
has it assigned; never a rebalance asked for by the check itself."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from streams.runtime.assignment_gaps import REFRESH_EVERY_S, AssignmentGaps, fill_gaps, unassigned

W1, W2 = "http://127.0.0.2:6066", "http://127.0.0.3:6066"
CHANGELOGS = {W1: {"jobs-changelog": [0, 1]}, W2: {"jobs-changelog": [2, 3]}}
SOURCES = {W1: {"ingest": [0]}, W2: {"ingest": [1], "idle": []}}


def test_unassigned_names_topics_no_worker_has_a_partition_of() -> None:
    subscribed = {"jobs-changelog", "ingest", "sessions-changelog", "idle"}
    assert unassigned(subscribed, CHANGELOGS, SOURCES) == {"sessions-changelog", "idle"}
    assert unassigned({"ingest"}, CHANGELOGS, SOURCES) == set()
    assert unassigned({"ingest"}) == {"ingest"}


def test_refreshes_wait_between_them() -> None:
    gaps = AssignmentGaps()
    assert gaps.due(0.0)
    gaps.refreshed(100.0, shown=False)
    assert not gaps.due(100.0 + REFRESH_EVERY_S - 0.1) and gaps.shown_at is None
    assert gaps.due(100.0 + REFRESH_EVERY_S) and gaps.refreshes == 1
    gaps.refreshed(200.0, shown=True)
    gaps.refreshed(300.0, shown=True)
    assert gaps.shown_at == 200.0  # the first time the metadata showed the topics


class FakeKafka:
    """aiokafka's consumer as the check reads it; its metadata learns `later` topics'
    partitions at the next refresh. Records in which thread it was refreshed."""

    def __init__(self, subscribed: set[str], known: dict[str, set[int]],
                 later: dict[str, set[int]]) -> None:
        self.subscribed = subscribed
        self.known = dict(known)
        self.later = later
        self.refreshes = 0
        self.threads: set[str] = set()
        self._client = SimpleNamespace(force_metadata_update=self._refresh,
                                       cluster=SimpleNamespace(partitions_for_topic=self.known.get))

    def subscription(self) -> set[str]:
        return self.subscribed

    async def _refresh(self) -> bool:
        self.threads.add(threading.current_thread().name)
        self.refreshes += 1
        self.known.update(self.later)
        return True


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
        assignor=SimpleNamespace(changelog_distribution=dict(CHANGELOGS),
                                 external_topic_distribution=SOURCES),
        consumer=SimpleNamespace(_thread=thread),
    )
    for name, value in changes.items():
        setattr(app, name, value)
    return app


def test_a_left_out_topic_is_refreshed_for_until_it_is_assigned(
    consumer_loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    kafka = FakeKafka({"jobs-changelog", "ingest", "sessions-changelog"},
                      known={"jobs-changelog": {0, 1, 2, 3}, "ingest": {0, 1}},
                      later={})
    app, gaps = app_with(kafka, consumer_loop), AssignmentGaps()
    asyncio.run(fill_gaps(app, gaps, now=0.0))
    # Refreshed in the consumer's own thread; still unknown, shown as a gap.
    assert gaps.topics == {"sessions-changelog"} and gaps.shown_at is None
    assert kafka.refreshes == 1 and kafka.threads == {"consumer-thread"}

    kafka.later = {"sessions-changelog": {0, 1, 2, 3}}
    asyncio.run(fill_gaps(app, gaps, now=1.0))  # not due yet
    assert kafka.refreshes == 1
    asyncio.run(fill_gaps(app, gaps, now=REFRESH_EVERY_S))
    assert kafka.refreshes == 2 and gaps.shown_at == REFRESH_EVERY_S

    # The leader's consumer assigns again on that refresh: the gap closes.
    app.assignor.changelog_distribution[W2] = {"jobs-changelog": [2, 3],
                                               "sessions-changelog": [0, 1, 2, 3]}
    asyncio.run(fill_gaps(app, gaps, now=100.0))
    assert gaps.topics == frozenset() and gaps.shown_at is None and kafka.refreshes == 2
    said = [r.getMessage() for r in caplog.records if "sessions-changelog" in r.getMessage()]
    assert len(said) == 2 and "no worker's assignment" in said[0]
    assert said[1] == "topics ['sessions-changelog'] are assigned again"


def test_a_gap_the_metadata_does_not_explain_is_said_once_and_never_rebalanced(
    consumer_loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    """Two workers advertising one URL: the assignor's map by URL loses one's topics,
    while the metadata has them. Only refreshes, every REFRESH_EVERY_S, and one hint."""
    kafka = FakeKafka({"ingest", "solo"}, known={"ingest": {0, 1}, "solo": {0}}, later={})
    app, gaps = app_with(kafka, consumer_loop), AssignmentGaps()
    for second in range(0, 200, 2):
        asyncio.run(fill_gaps(app, gaps, now=float(second)))
    assert kafka.refreshes == len(range(0, 200, 6)) and gaps.topics == {"solo"}  # due at 5 s
    hints = [r.getMessage() for r in caplog.records if "ADVERTISED_URL" in r.getMessage()]
    assert len(hints) == 1 and "still in no worker's assignment 60 s" in hints[0]


def test_nothing_is_refreshed_when_all_is_assigned_or_the_group_is_moving(
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
    assert gap.refreshes == 0


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
