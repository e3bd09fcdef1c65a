"""The router's decoded messages handed to the readers of the same worker: taken only
for the very bytes that were written, once per reader, bounded by events."""

from __future__ import annotations

import pytest

from streams.runtime.handoff import Handoff


def test_each_reader_takes_a_message_once_then_it_is_gone() -> None:
    handoff = Handoff()
    handoff.reads("t")
    handoff.reads("t")
    docs = [{"a": 1}, {"a": 2}]
    handoff.put("t", 0, 7, b"[1,2]", docs)
    assert handoff.take("t", 0, 7, b"[1,2]") is docs
    assert handoff.take("t", 0, 7, b"[1,2]") is docs
    assert handoff.take("t", 0, 7, b"[1,2]") is None  # both readers had it
    assert handoff.stats() == {"hits": 2, "misses": 1, "evicted": 0, "held_events": 0}


def test_only_the_same_bytes_at_the_same_place_are_handed() -> None:
    handoff = Handoff()
    handoff.reads("t")
    handoff.put("t", 0, 7, b'{"a":1}', [{"a": 1}])
    assert handoff.take("t", 0, 7, b'{"a":2}') is None  # other bytes at that offset
    assert handoff.take("t", 1, 7, b'{"a":1}') is None  # another partition
    assert handoff.take("t", 0, 8, b'{"a":1}') is None
    assert handoff.take("t", 0, 7, None) is None
    assert handoff.take("t", 0, 7, b'{"a":1}') == [{"a": 1}]


def test_nothing_is_kept_for_a_topic_nobody_here_reads() -> None:
    handoff = Handoff()
    handoff.put("unread", 0, 0, b"{}", [{}])
    assert not handoff.wants("unread")
    assert handoff.stats()["held_events"] == 0


def test_a_topic_never_fed_is_no_miss() -> None:
    handoff = Handoff()
    handoff.reads("windows")  # a sink of records the router does not write
    assert handoff.take("windows", 0, 0, b"{}") is None
    assert handoff.misses == 0


def test_the_oldest_messages_go_first_past_the_bound() -> None:
    handoff = Handoff(max_events=5)
    handoff.reads("t")
    for offset in range(4):
        handoff.put("t", 0, offset, b"[x]", [{}, {}])
    assert handoff.stats()["held_events"] == 4 and handoff.evicted == 2
    assert handoff.take("t", 0, 0, b"[x]") is None and handoff.take("t", 0, 1, b"[x]") is None
    assert handoff.take("t", 0, 3, b"[x]") is not None
    with pytest.raises(ValueError):
        Handoff(max_events=0)
