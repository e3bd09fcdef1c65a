"""The router's ledger: what was already written for a source partition, rebuilt from
destination headers after a crash, decides what a redelivered message still needs."""

from __future__ import annotations

import random

import orjson

from streams.durable.route_ledger import (
    SOURCE_HEADER,
    SourceLedger,
    parse_source_header,
    rebuild,
    source_header,
)


def test_header_round_trip_with_dots_and_bars_in_names() -> None:
    name, value = source_header("t1.engine|ingest", 3, 1187)
    assert name == SOURCE_HEADER
    assert parse_source_header(value) == ("t1.engine|ingest", 3, 1187)
    assert parse_source_header(b"garbage") is None
    assert parse_source_header(b"\xff\xfe|1|2") is None


def test_state_round_trip() -> None:
    ledger = SourceLedger(41, {("engine.executions", 2): 17, ("engine.dead-letter", 0): 3})
    back = SourceLedger.from_state(orjson.loads(orjson.dumps(ledger.to_state())))
    assert (back.last, back.out) == (ledger.last, ledger.out)


def test_needs_respects_last_and_per_destination_boundaries() -> None:
    ledger = SourceLedger(last=10)
    a, b = ("x", 0), ("y", 1)
    assert not ledger.needs(10, a)
    assert ledger.needs(11, a)
    ledger.seen(a, 14)
    assert not ledger.needs(14, a) and ledger.needs(15, a)
    assert ledger.needs(12, b)


def test_rebuild_ignores_other_sources_and_foreign_messages() -> None:
    ledger = SourceLedger()
    found = [
        (("x", 0), source_header("ingest", 1, 5)[1]),
        (("x", 0), source_header("ingest", 1, 9)[1]),
        (("x", 0), source_header("ingest", 2, 50)[1]),
        (("y", 0), None),
        (("y", 0), b"not a header"),
    ]
    rebuild(ledger, ("ingest", 1), found)
    assert ledger.written == {("x", 0): 9}


def test_crash_anywhere_routes_every_event_exactly_once() -> None:
    """Simulate: route batches of source messages to destinations, write each
    destination's messages in order, crash after any subset of destinations got their
    writes (and before or after the ledger is saved), rebuild from the destinations'
    headers, re-route from the last committed source offset."""
    rng = random.Random(5)
    destinations = [("typed", p) for p in range(4)] + [("dead", p) for p in range(2)]
    source = ("ingest", 0)
    messages = [
        [(rng.choice(destinations), f"e{o}.{i}") for i in range(rng.randint(1, 4))]
        for o in range(300)
    ]
    for trial in range(50):
        logs: dict[tuple[str, int], list[tuple[bytes, str]]] = {d: [] for d in destinations}
        saved = SourceLedger().to_state()
        committed = -1
        position = 0
        while position < len(messages):
            ledger = SourceLedger.from_state(saved)
            rebuild(
                ledger,
                source,
                ((d, header) for d in destinations
                 for header, _ in logs[d][ledger.out.get(d, 0):]),
            )
            batch = list(range(position, min(position + rng.randint(1, 30), len(messages))))
            outputs: dict[tuple[str, int], list[str]] = {}
            top: dict[tuple[str, int], int] = {}
            for offset in batch:
                for destination, event in messages[offset]:
                    if ledger.needs(offset, destination):
                        outputs.setdefault(destination, []).append(event)
                        top[destination] = offset
            crash = rng.choice(["none", "none", "during writes", "before commit"])
            order = list(outputs)
            rng.shuffle(order)
            if crash == "during writes":  # some destinations got their writes, no save
                order = order[: rng.randint(0, len(order))]
            for destination in order:
                header = source_header(*source, top[destination])[1]
                logs[destination] += [(header, e) for e in outputs[destination]]
                ledger.acknowledged(destination, len(logs[destination]))
            if crash == "during writes":
                position = max(committed + 1 - rng.randint(0, 5), 0)
                continue
            ledger.routed_through(batch[-1])  # saved only once every write is acknowledged
            saved = ledger.to_state()
            if crash == "before commit":  # saved, but the source offsets were not committed
                position = max(committed + 1 - rng.randint(0, 5), 0)
                continue
            committed = batch[-1]
            position = committed + 1
        got = sorted(e for d in destinations for _, e in logs[d])
        want = sorted(e for m in messages for _, e in m)
        assert got == want, f"trial {trial}"
        for destination in destinations:
            expected_order = [e for m in messages for d, e in m if d == destination]
            assert [e for _, e in logs[destination]] == expected_order
