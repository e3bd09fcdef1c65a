"""The exactly-once protocol on its own (no broker): headers, ledger keys and state,
what a takeover folds in, and a model of crashes anywhere in a stream of batches."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from streams.domain.dead_letters import DeadLetter, Inbound
from streams.durable.exactly_once import (
    ID_HEADER,
    SOURCE_HEADER,
    Ledgers,
    Outputs,
    SourceLedger,
    TableLedgers,
    TableWriter,
    is_bookkeeping,
    ledger_key,
    parse_ledger_key,
    parse_source_header,
    read_back,
    source_header,
)
from tests.unit.agents.stub_app import StubProducer, StubTable, StubTails, stub_app


def test_header_round_trip() -> None:
    name, value = source_header("router", ("t1.engine-ingest", 3), (1187, 4))
    assert name == SOURCE_HEADER
    assert parse_source_header(value) == ("router", ("t1.engine-ingest", 3), (1187, 4))
    assert parse_source_header(b"garbage") is None
    assert parse_source_header(b"\xff\xfe|a|1|2|3") is None
    assert parse_source_header(b"router|t|1|2") is None  # a position has two parts


@pytest.mark.parametrize("entity_id", ["ledger|t|0", "\x00offset|0", "clock|engine|0", "ÿ"])
def test_no_key_taken_from_an_event_is_a_bookkeeping_key(entity_id: str) -> None:
    key = entity_id.encode()
    assert not is_bookkeeping(key)
    assert parse_ledger_key(key) is None
    assert is_bookkeeping(ledger_key(("engine.ingest", 0)))
    with pytest.raises(UnicodeDecodeError):
        ledger_key(("t", 0)).decode()


def test_ledger_key_round_trip() -> None:
    assert parse_ledger_key(ledger_key(("a.b-c", 11))) == ("a.b-c", 11)


def test_state_round_trip_keeps_last_and_out_only() -> None:
    ledger = SourceLedger(41, {("engine.executions", 2): 17, ("engine.dead-letter", 0): 3})
    ledger.found(("x", 0), (50, 1), None)
    back = SourceLedger.from_bytes(ledger.to_bytes())
    assert (back.last, back.out, back.written, back.ids) == (ledger.last, ledger.out, {}, {})


def test_needs_by_position_and_by_id() -> None:
    ledger = SourceLedger(last=10)
    a, b = ("x", 0), ("y", 1)
    assert ledger.applied(10) and not ledger.applied(11)
    ledger.found(a, (14, 2), None)
    assert not ledger.needs(a, (14, 2), None) and not ledger.needs(a, (14, -1), None)
    assert ledger.needs(a, (14, 3), None) and ledger.needs(a, (15, -1), None)
    assert ledger.needs(b, (12, -1), None)
    ledger.found(a, (3, -1), "w-1")  # an id does not move the boundary
    assert not ledger.needs(a, (99, -1), "w-1") and ledger.needs(a, (1, -1), "w-2")
    assert ledger.written[a] == (14, 2)


def _run(coro: Any) -> Any:
    return asyncio.new_event_loop().run_until_complete(coro)


def test_read_back_folds_only_this_agents_outputs_of_these_sources_past_out() -> None:
    producer = StubProducer()
    dest = ("out", 0)

    async def write(agent: str, source: tuple[str, int], position: tuple[int, int]) -> None:
        await producer.send("out", None, b"{}", 0, None, [source_header(agent, source, position)])

    async def scenario() -> tuple[SourceLedger, SourceLedger]:
        await write("windows", ("in", 0), (5, -1))
        await producer.send("out", None, b"{}", 0, None, [(SOURCE_HEADER, b"junk")])
        await write("router", ("in", 0), (7, 1))  # offset 2, below `out` of the ledger
        await write("router", ("in", 0), (9, 0))
        await write("router", ("in", 1), (4, -1))
        headers = [source_header("windows", ("in", 0), (1, -1)), (ID_HEADER, b"w")]
        await producer.send("out", None, b"{}", 0, None, headers)
        loaded = SourceLedger(3, {dest: 3})
        fresh = SourceLedger()
        ledgers = {("in", 0): loaded, ("in", 9): fresh}
        await read_back(StubTails(producer), "router", ledgers, {("in", 9)}, [dest])
        return loaded, fresh

    loaded, fresh = _run(scenario())
    assert loaded.written == {dest: (9, 0)} and loaded.ids == {}
    assert fresh.out == {dest: 6} and fresh.written == {}


def test_fresh_ledger_is_saved_before_the_first_output_and_unchanged_ones_never(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = stub_app(monkeypatch)
    table = StubTable("t", app.producer)
    store = TableLedgers(TableWriter(app, table))
    ledgers = Ledgers(None, "router", store, lambda: [("out", 0)])  # type: ignore[arg-type]

    async def scenario() -> None:
        await app.producer.send("out", None, b"{}", 0, None, [])
        await ledgers.ensure([("in", 0)])
        await ledgers.save(("in", 0))  # unchanged since the takeover saved it

    _run(scenario())
    assert [s.key for s in app.producer.sent if s.topic == "t-changelog"] == [
        ledger_key(("in", 0))
    ]
    assert ledgers[("in", 0)].out == {("out", 0): 1}


def test_dead_letters_go_in_position_order_and_once(monkeypatch: pytest.MonkeyPatch) -> None:
    app = stub_app(monkeypatch)
    ledgers = Ledgers(
        None, "jobs", TableLedgers(TableWriter(app, StubTable("t", app.producer))),  # type: ignore[arg-type]
        lambda: [("dl", 0)],
    )

    def letter(offset: int, index: int | None) -> DeadLetter:
        return DeadLetter("r", "m", Inbound("in", 0, offset, None), b"", batch_index=index)

    letters = [letter(5, 2), letter(3, None), letter(5, 0)]

    async def scenario() -> list[DeadLetter]:
        taken = await ledgers.ensure([("in", 0)])
        outputs = Outputs(app.producer, "jobs", taken)
        first = await outputs.dead_letters(letters, "dl", 1, 0.0)
        await outputs.acknowledged()
        # The worker dies before the ledger is saved: the takeover loads the ledger the
        # first takeover saved, and finds the dead letters past it.
        ledgers.forget([("in", 0)])
        taken = await ledgers.ensure([("in", 0)])
        again = await Outputs(app.producer, "jobs", taken).dead_letters(letters, "dl", 1, 0.0)
        assert again == []
        return first

    first = _run(scenario())
    assert [(d.source.offset, d.batch_index) for d in first] == [(3, None), (5, 0), (5, 2)]


def test_crash_anywhere_writes_every_output_exactly_once() -> None:
    """A model of the protocol: batches of source messages, each event bound for one
    destination; outputs of one destination written in position order, possibly
    several per message; a crash after any prefix of the writes, or after the ledger
    is saved but before the source offsets are committed; the takeover folds the
    headers found past `out` and goes on from the last committed offset."""
    rng = random.Random(5)
    destinations = [("typed", p) for p in range(4)] + [("dead", p) for p in range(2)]
    source = ("ingest", 0)
    messages = [
        [(rng.choice(destinations), f"e{o}.{i}") for i in range(rng.randint(1, 6))]
        for o in range(300)
    ]
    for trial in range(50):
        logs: dict[tuple[str, int], list[tuple[bytes, str]]] = {d: [] for d in destinations}
        saved = SourceLedger().to_bytes()
        committed = -1
        position = 0
        while position < len(messages):
            ledger = SourceLedger.from_bytes(saved)
            for d in destinations:
                for header, _ in logs[d][ledger.out.get(d, 0):]:
                    parsed = parse_source_header(header)
                    assert parsed is not None
                    ledger.found(d, parsed[2], None)
            batch = range(position, min(position + rng.randint(1, 30), len(messages)))
            writes: list[tuple[tuple[str, int], tuple[int, int], str]] = []
            for offset in batch:
                if ledger.applied(offset):
                    continue
                for index, (destination, event) in enumerate(messages[offset]):
                    if ledger.needs(destination, (offset, index), None):
                        writes.append((destination, (offset, index), event))
            crash = rng.choice(["none", "none", "during writes", "before commit"])
            if crash == "during writes":  # each destination got a prefix of its writes
                cut = {d: rng.randint(0, 8) for d in destinations}
                writes = [w for w in writes if _take(cut, w[0])]
            for destination, pos, event in writes:
                header = source_header("router", source, pos)[1]
                logs[destination].append((header, event))
                ledger.acknowledged(destination, len(logs[destination]))
            if crash == "during writes":
                position = max(committed + 1 - rng.randint(0, 5), 0)
                continue
            ledger.applied_through(batch[-1])  # saved once every write is acknowledged
            saved = ledger.to_bytes()
            if crash == "before commit":
                position = max(committed + 1 - rng.randint(0, 5), 0)
                continue
            committed = batch[-1]
            position = committed + 1
        for destination in destinations:
            expected = [e for m in messages for d, e in m if d == destination]
            assert [e for _, e in logs[destination]] == expected, f"trial {trial}"


def _take(cut: dict[tuple[str, int], int], destination: tuple[str, int]) -> bool:
    cut[destination] -= 1
    return cut[destination] >= 0


def test_a_ledger_revoked_while_it_is_taken_over_is_used_by_its_batch_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kept, it would be taken as it is when the source came back, without what its
    next owner did meanwhile; and its batch would save it for a source it lost."""
    app = stub_app(monkeypatch)
    table = StubTable("t", app.producer)
    ledgers = Ledgers(None, "router", TableLedgers(TableWriter(app, table)),  # type: ignore[arg-type]
                      lambda: [("out", 0)])
    store_load = ledgers.store.load

    def load_then_revoke(source: Any) -> Any:
        ledger = store_load(source)
        if source == ("in", 1):
            ledgers.forget([source])  # the rebalance, while the takeover reads back
        return ledger

    monkeypatch.setattr(ledgers.store, "load", load_then_revoke)

    async def scenario() -> dict[Any, Any]:
        got = await ledgers.ensure([("in", 0), ("in", 1)])
        got[("in", 1)].applied_through(5)
        await ledgers.save(("in", 1))
        return got

    got = _run(scenario())
    assert set(got) == {("in", 0), ("in", 1)}  # the batch has both
    assert ledgers.get(("in", 0)) is got[("in", 0)]
    assert ledgers.get(("in", 1)) is None
    saved = [s for s in app.producer.sent if s.topic == "t-changelog"]
    assert [s.key for s in saved].count(ledger_key(("in", 1))) == 1  # the fresh one only
