"""Topics the group's assignment left out, and a new assignment asked for until none is.

faust's assignor leaves out a subscribed topic of which the group leader's metadata
knows no partitions yet (it logs "Ignoring missing topic"): a table's changelog created
a moment before the first join, seen mostly on a three-node cluster, where a new topic
reaches every broker's metadata later. No worker then owns that topic's partitions: the
table's keyed views answer 503 (faust cannot name the key's owner) and its changelog is
not recovered. aiokafka assigns again only when the leader's next metadata refresh shows
the topic, and faust's consumer refreshes every five minutes.

So every CHECK_S seconds outside rebalances the worker looks for subscribed topics that
no worker of the group was assigned. While there is one, it refreshes the consumer's
metadata and, once that shows the topic's partitions, asks the group for a new
assignment (a JoinGroup from any member rebalances the whole group). /health says
"not ready" meanwhile, naming the topics.
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

CHECK_S = 2.0
# Between two requests for a new assignment: the leader's own metadata may need a
# refresh or two more before it shows the topic.
ASK_EVERY_S = 5.0
# How long the consumer's metadata refresh may take before the next check tries again.
REFRESH_TIMEOUT_S = 10.0

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
        self.asked = 0  # new assignments asked for since the worker started
        self._asked_at = float("-inf")

    def due(self, now: float) -> bool:
        """Whether a new assignment may be asked for at `now` (monotonic seconds)."""
        return now - self._asked_at >= ASK_EVERY_S

    def asked_at(self, now: float) -> None:
        """Record a request for a new assignment."""
        self._asked_at = now
        self.asked += 1


def complete_assignment(app: faust.App, check_s: float = CHECK_S) -> AssignmentGaps:
    """Watch the group's assignment for left-out topics and ask for a new one while
    there are any (see the module docstring); answers what /health shows."""
    gaps = AssignmentGaps()

    @app.timer(check_s)
    async def _complete_assignment() -> None:
        await fill_gaps(app, gaps, time.monotonic())

    return gaps


async def fill_gaps(app: Any, gaps: AssignmentGaps, now: float) -> None:
    """One check: record in `gaps` the subscribed topics no worker was assigned and, if
    there are any and one may ask at `now`, refresh the consumer's metadata and ask for a
    new assignment once it shows them."""
    if app.rebalancing:
        return
    assignor = app.assignor
    distributions = (assignor.changelog_distribution, assignor.external_topic_distribution)
    if not any(distributions):  # no assignment received yet
        return
    # faust's consumer thread, its loop and its aiokafka consumer (with that one's client
    # and group coordinator): internals, as in streams.runtime.consumer.
    thread: Any = getattr(app.consumer, "_thread", None)
    try:
        kafka = thread._ensure_consumer() if thread is not None else None
    except ConsumerNotStarted:
        kafka = None
    if kafka is None:
        return
    missing = unassigned(kafka.subscription(), *distributions)
    if missing and missing != gaps.topics:
        log.warning(
            "topics %s are in no worker's assignment (the group leader's metadata had no "
            "partitions of them yet): asking for a new assignment once they show",
            sorted(missing),
        )
    if gaps.topics and not missing:
        log.warning("topics %s are assigned again", sorted(gaps.topics))
    gaps.topics = frozenset(missing)
    if not missing or not gaps.due(now):
        return
    asked = asyncio.run_coroutine_threadsafe(
        _refresh_and_rejoin(kafka, missing), thread.thread_loop
    )
    try:
        if await asyncio.wait_for(asyncio.wrap_future(asked), REFRESH_TIMEOUT_S):
            gaps.asked_at(now)
    except Exception as exc:  # unreachable broker: the next check tries again
        log.info("refreshing the consumer's metadata failed: %r", exc)


async def _refresh_and_rejoin(kafka: Any, missing: set[str]) -> bool:
    """In the consumer's thread: refresh its metadata; if that shows partitions of every
    `missing` topic, ask the group for a new assignment. Answers whether it asked."""
    client = kafka._client
    await client.force_metadata_update()
    if all(client.cluster.partitions_for_topic(topic) for topic in missing):
        kafka._coordinator.request_rejoin()
        return True
    return False
