"""Topics the group's assignment left out, and the metadata refresh that has them assigned.

faust's assignor leaves out a subscribed topic of which the group leader's metadata
knows no partitions yet (it logs "Ignoring missing topic"): a table's changelog created
a moment before the first join, seen mostly on a three-node cluster, where a new topic
reaches every broker's metadata later. No worker then owns that topic's partitions: the
table's keyed views answer 503 (faust cannot name the key's owner) and its changelog is
not recovered. The leader's aiokafka consumer assigns again by itself as soon as a
metadata refresh shows the topic's partitions, but faust's consumer refreshes only every
five minutes.

So every CHECK_S seconds outside rebalances each worker looks for subscribed topics that
no worker of the group was assigned, and while there is one refreshes its consumer's
metadata every REFRESH_EVERY_S seconds: on the leader, the refresh that shows the topic
starts the new assignment. No worker asks for one itself: a gap that the metadata does
not explain (two workers advertising the same URL hide each other's topics from the
assignor's map) would otherwise rebalance the group again and again. /health says "not
ready" meanwhile, naming the topics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted

__all__ = ["AssignmentGaps", "complete_assignment", "fill_gaps", "unassigned"]

log = logging.getLogger(__name__)

# faust's internals read here, from the worker's consumer: its thread, that thread's
# loop and aiokafka consumer (checked when the consumer is created, as
# streams.runtime.consumer does for its own).
PRIVATES: tuple[str, ...] = ("_thread._ensure_consumer", "_thread.thread_loop")

CHECK_S = 2.0
REFRESH_EVERY_S = 5.0
# How long the consumer's metadata refresh may take before the next check tries again.
REFRESH_TIMEOUT_S = 10.0
# A gap that lasts this long after the metadata showed its topics is not one the
# metadata explains: said once, with what to check.
UNEXPLAINED_AFTER_S = 60.0

Distribution = Mapping[str, Mapping[str, Iterable[int]]]  # worker URL -> topic -> partitions


def unassigned(subscribed: Iterable[str], *distributions: Distribution) -> set[str]:
    """The `subscribed` topics of which no worker has a partition in any of
    `distributions` (the assignor's, by worker URL)."""
    assigned = {
        topic
        for distribution in distributions
        for topics in distribution.values()
        for topic, partitions in topics.items()
        if list(partitions)
    }
    return set(subscribed) - assigned


class AssignmentGaps:
    """The topics this worker last found left out of the group's assignment."""

    def __init__(self) -> None:
        self.topics: frozenset[str] = frozenset()
        self.refreshes = 0  # metadata refreshes made for gaps since the worker started
        self.last_refresh_at = float("-inf")
        self.shown_at: float | None = None  # when the metadata first showed this gap's topics
        self.explained = True  # False once a gap outlived UNEXPLAINED_AFTER_S (said once)

    def due(self, now: float) -> bool:
        """Whether the consumer's metadata may be refreshed at `now` (monotonic s)."""
        return now - self.last_refresh_at >= REFRESH_EVERY_S

    def refreshed(self, now: float, shown: bool) -> None:
        """Record a refresh at `now`, and whether it showed every left-out topic."""
        self.last_refresh_at = now
        self.refreshes += 1
        if shown and self.shown_at is None:
            self.shown_at = now

    def closed(self) -> None:
        """Every topic is assigned."""
        self.topics = frozenset()
        self.shown_at = None
        self.explained = True


def complete_assignment(app: faust.App, check_s: float = CHECK_S) -> AssignmentGaps:
    """Watch the group's assignment for left-out topics and refresh the metadata while
    there are any (see the module docstring); answers what /health shows."""
    gaps = AssignmentGaps()

    @app.timer(check_s)
    async def _complete_assignment() -> None:
        await fill_gaps(app, gaps, time.monotonic())

    return gaps


async def fill_gaps(app: Any, gaps: AssignmentGaps, now: float) -> None:
    """One check: record in `gaps` the subscribed topics no worker was assigned and, if
    there are any and a refresh is due at `now`, refresh the consumer's metadata."""
    if app.rebalancing:
        return
    assignor = app.assignor
    distributions = (assignor.changelog_distribution, assignor.external_topic_distribution)
    if not any(distributions):  # no assignment received yet
        return
    # faust's consumer thread, its loop and its aiokafka consumer (with that one's
    # client): internals, as in streams.runtime.consumer.
    thread: Any = getattr(app.consumer, "_thread", None)
    try:
        kafka = thread._ensure_consumer() if thread is not None else None
    except ConsumerNotStarted:
        kafka = None
    if kafka is None:
        return
    missing = unassigned(kafka.subscription(), *distributions)
    if not missing:
        if gaps.topics:
            log.warning("topics %s are assigned again", sorted(gaps.topics))
        gaps.closed()
        return
    if missing != gaps.topics:
        log.warning(
            "topics %s are in no worker's assignment (the group leader's metadata had no "
            "partitions of them yet): refreshing the metadata until they are assigned",
            sorted(missing),
        )
        gaps.closed()
        gaps.topics = frozenset(missing)
    if gaps.explained and gaps.shown_at is not None and now - gaps.shown_at >= UNEXPLAINED_AFTER_S:
        gaps.explained = False
        log.warning(
            "topics %s are still in no worker's assignment %.0f s after the metadata "
            "showed their partitions: check that every worker advertises its own "
            "ENGINESTREAM_WEB_ADVERTISED_URL (two with the same one hide each other's "
            "partitions)",
            sorted(missing),
            now - gaps.shown_at,
        )
    if not gaps.due(now):
        return
    try:
        refreshed = asyncio.run_coroutine_threadsafe(_refresh(kafka, missing), thread.thread_loop)
        shown = await asyncio.wait_for(asyncio.wrap_future(refreshed), REFRESH_TIMEOUT_S)
    except Exception as exc:  # unreachable broker, or the worker stopping: next check
        log.info("refreshing the consumer's metadata failed: %r", exc)
        return
    gaps.refreshed(now, shown)


async def _refresh(kafka: Any, missing: set[str]) -> bool:
    """In the consumer's thread: refresh its metadata. Answers whether that shows
    partitions of every `missing` topic."""
    client = kafka._client
    await client.force_metadata_update()
    return all(client.cluster.partitions_for_topic(topic) for topic in missing)
