"""The worker's Kafka consumer: faust's aiokafka Consumer that hands each agent each
partition strictly in offset order, and never loses a message on the way.

The rule every mechanism of this project depends on: each agent sees each input
partition strictly in offset order, with no offset skipped, from the partition's
committed offset (its first offset when nothing was committed yet). Every exactly-once
mechanism (router ledgers, window clocks, file checkpoints, training decisions) skips a
message at or below the last offset it applied, so a message delivered after a later
one of its partition is lost for good. What else holds with it:

* A message may be delivered again, only as part of a reread of its partition from an
  earlier offset (after a rebalance, a cleared queue, a jump, a stall), which agents
  skip up to what they applied.
* Nothing of an earlier consumer generation is delivered, nor anything between a
  rebalance and the fetch loop's seek to the committed offsets.
* Every seek is made by the fetch loop between two fetches, in the Kafka client's own
  thread, so the first record after a seek comes from the sought offset.
* The committed offset never passes an offset not processed in the current assignment
  (offsets known not to exist aside).
* A message faust drops (cleared from an agent's queue, or fetched while its partition
  could not take it) has its partition read again from there.

`OrderedConsumer` is composed of one mixin per concern, each overriding the faust
methods it corrects and naming them:

* streams.runtime.delivery_order.InOrderDelivery: the fetch loop (`_drain_messages`,
  direct delivery, in-order delivery, a delivery that spanned a seek or a clear);
* streams.runtime.seeks.DeferredSeeks: `seek` and `perform_seek`, made by the fetch loop;
* streams.runtime.cleared.RereadCleared: messages faust's flow control clears from the
  agents' queues, read again (`note_cleared`, `_clean_unacked_messages`);
* streams.runtime.fetch.RereadDropped: `getmany`, which never drops a record silently;
* streams.runtime.commit_rule.GaplessCommit: `ack` and `_new_offset`, the commit rule;
* streams.runtime.fetch_wait.ShortFetchWait: `_new_consumer_thread`, whose Kafka
  consumer waits at the broker 0.1 s for data, not faust's 1.5 s.

The stall guard (streams.runtime.stall_timer, streams.runtime.stall_guard) reads the
consumer and seeks a partition left behind. Each mixin names the faust internals it
overrides (OVERRIDES) and reads (PRIVATES); they are checked when the consumer is
installed and created (streams.runtime.versions.check_internals).

`install` makes an app use it; streams.runtime.bulk's bulk agents sit on top.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver

from streams.runtime import assignment_gaps, stall_timer
from streams.runtime.cleared import note_flow_control_clears
from streams.runtime.commit_rule import GaplessCommit
from streams.runtime.delivery_order import InOrderDelivery
from streams.runtime.fetch import RereadDropped
from streams.runtime.fetch_wait import ShortFetchWait
from streams.runtime.versions import check_internals

__all__ = ["OrderedConsumer", "OrderedTransport", "install"]


class OrderedConsumer(InOrderDelivery, RereadDropped, GaplessCommit, ShortFetchWait):
    """faust's aiokafka Consumer that delivers each partition in offset order (see the
    module docstring for the rule and the mixins)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_internals(self, privates(), "faust's aiokafka Consumer")


def overrides() -> list[str]:
    """The faust methods OrderedConsumer's mixins override."""
    return _declared("OVERRIDES")


def privates() -> list[str]:
    """The faust internals OrderedConsumer's mixins and the timers (stall guard,
    assignment gaps) read from the consumer (a dotted name is followed from it)."""
    declared = _declared("PRIVATES")
    timers = [*stall_timer.PRIVATES, *assignment_gaps.PRIVATES]
    return declared + [name for name in dict.fromkeys(timers) if name not in declared]


def _declared(attribute: str) -> list[str]:
    names: list[str] = []
    for klass in OrderedConsumer.__mro__:
        for name in vars(klass).get(attribute, ()):
            if name not in names:
                names.append(name)
    return names


class OrderedTransport(aiokafka_driver.Transport):
    """faust's aiokafka transport with OrderedConsumer."""

    Consumer = OrderedConsumer
    fetch_wait_ms: int | None = None  # streams.runtime.fetch_wait


def install(app: faust.App, fetch_wait_s: float | None = None) -> None:
    """Make `app` consume with OrderedConsumer (before the app starts): its transport,
    and faust's flow control hooked so that the messages it clears are read again. A
    fetch waits at most `fetch_wait_s` at the broker (None: faust's 1.5 s)."""
    check_internals(aiokafka_driver.Consumer, overrides(), "faust's aiokafka Consumer")
    transport = OrderedTransport(app.conf.broker_consumer, app)
    if fetch_wait_s is not None:
        transport.fetch_wait_ms = max(1, round(fetch_wait_s * 1000))
    app.transport = transport
    note_flow_control_clears(app)
