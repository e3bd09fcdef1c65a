"""The router through a real worker process and a real broker.

Over ten thousand messages — valid events of every type, alone and in batches (some
mixing valid and invalid events), on engine.ingest and on the typed raw topics, as
JSON and as Avro containers, plus malformed JSON, schema violations, unknown types,
lifecycle events carrying prompt text and oversized messages — and then: every
event is in exactly one place, typed topics are partitioned by entity id, dead
letters carry the original bytes and the reason, and the counts add up.
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config.settings import Settings
from streams.config.topics import EVENT_ROUTES, TopicNames
from streams.domain.avro_codec import encode_container
from streams.domain.validation import default_registry
from streams.kafka.admin import ensure_topics
from streams.kafka.fleet import Fleet
from streams.kafka.partitioner import partition_for
from tests.integration.kafka_io import produce_all, read_until
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

SECRET = "SECRET-PROMPT-7f3a"
MAX_MESSAGE_BYTES = 200_000
KEEP_BYTES = 4_096


def canonical(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


@dataclass
class Expectation:
    """What the input should produce, built alongside the input."""

    messages: list[tuple[str, bytes, list[tuple[str, bytes]], bytes | None]] = field(
        default_factory=list
    )
    # canonical event -> (event type, how many times sent)
    events: Counter[tuple[str, bytes]] = field(default_factory=Counter)
    # (message index, batch index or None) -> (reason, original bytes)
    dead: dict[tuple[int, int | None], tuple[str, bytes]] = field(default_factory=dict)

    def send(
        self,
        topic: str,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
        key: bytes | None = None,
    ) -> int:
        self.messages.append((topic, value, headers or [], key))
        return len(self.messages) - 1

    def valid(self, event_type: str, doc: dict[str, Any]) -> None:
        stripped = {k: v for k, v in doc.items() if k != "event_type"}
        self.events[(event_type, canonical(stripped))] += 1


def invalid_variant(rng: random.Random, event_type: str, doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of `doc` that breaks its schema: a required field gone or a wrong type."""
    broken = dict(doc)
    key_field = EVENT_ROUTES[event_type].key_field
    if rng.random() < 0.5:
        del broken[key_field]
    else:
        broken["timestamp"] = "yesterday"
    return broken


def build_input(names: TopicNames, rng: random.Random) -> Expectation:
    fleet = Fleet(rng=rng, engines=60)
    stream = fleet.mixed()
    exp = Expectation()
    header = "event-type"

    # 1. Single valid events on engine.ingest: type by header, or by event_type field.
    for i in range(5000):
        event_type, doc = next(stream)
        if i % 2:
            exp.send(names.ingest, orjson.dumps(doc), [(header, event_type.encode())])
        else:
            exp.send(names.ingest, orjson.dumps({**doc, "event_type": event_type}))
        exp.valid(event_type, doc)

    # 2. Single valid events straight on their typed raw topics.
    for _ in range(1500):
        event_type, doc = next(stream)
        exp.send(names.raw[event_type], orjson.dumps(doc))
        exp.valid(event_type, doc)

    # 3. Batches of one type, 2..60 events; every third mixes in invalid events.
    for b in range(900):
        event_type, first = next(stream)
        docs = [first]
        while len(docs) < rng.randint(2, 60):
            t, doc = next(stream)
            if t == event_type:
                docs.append(doc)
        batch: list[Any] = []
        broken_at: dict[int, str] = {}
        for doc in docs:
            if b % 3 == 0 and rng.random() < 0.2:
                broken_at[len(batch)] = "schema_violation"
                batch.append(invalid_variant(rng, event_type, doc))
            else:
                batch.append(doc)
        if b % 3 == 0:
            broken_at[len(batch)] = "not_an_object"
            batch.append(rng.choice([7, "text", None, [1, 2]]))
        index = exp.send(names.ingest, orjson.dumps(batch), [(header, event_type.encode())])
        for position, doc in enumerate(batch):
            if position in broken_at:
                exp.dead[(index, position)] = (broken_at[position], orjson.dumps(doc))
            else:
                exp.valid(event_type, doc)

    # 4. Avro containers (the type comes from the container's schema).
    for _ in range(200):
        event_type, first = next(stream)
        docs = [first] + [d for t, d in (next(stream) for _ in range(30)) if t == event_type]
        exp.send(names.ingest, encode_container(event_type, docs))
        for doc in docs:
            exp.valid(event_type, doc)

    # 5. Malformed JSON.
    for _ in range(600):
        _, doc = next(stream)
        raw = orjson.dumps(doc)
        cut = raw[: rng.randrange(1, len(raw) - 1)]
        index = exp.send(names.ingest, cut, [(header, b"engine_execution")])
        exp.dead[(index, None)] = ("malformed_json", cut)

    # 6. Schema violations, single events.
    for _ in range(800):
        event_type, doc = next(stream)
        broken = invalid_variant(rng, event_type, doc)
        raw = orjson.dumps(broken)
        index = exp.send(names.ingest, raw, [(header, event_type.encode())])
        exp.dead[(index, None)] = ("schema_violation", raw)

    # 7. Unknown or missing event types.
    for i in range(400):
        _, doc = next(stream)
        raw = orjson.dumps(doc)
        headers = [(header, b"mystery_event")] if i % 2 else []
        index = exp.send(names.ingest, raw, headers)
        exp.dead[(index, None)] = ("unknown_event_type", raw)

    # 8. Lifecycle events carrying prompt text: refused, and stored without it.
    for i in range(300):
        doc = fleet.request_served()
        extra = {"prompt": SECRET} if i % 2 else {"messages": [{"content": SECRET}]}
        raw = orjson.dumps({**doc, **extra})
        index = exp.send(names.ingest, raw, [(header, b"engine_event")])
        exp.dead[(index, None)] = ("confidentiality", orjson.dumps(doc))

    # 9. Not an event at all.
    for value in (b"42", b"[]", b'"just a string"', b"null", b"true") * 40:
        index = exp.send(names.ingest, value, [(header, b"engine_execution")])
        exp.dead[(index, None)] = ("not_an_object", value)

    # 10. Oversized messages: valid JSON, too big to take.
    for _ in range(60):
        doc = fleet.execution()
        doc["input"] = "x" * (MAX_MESSAGE_BYTES + rng.randrange(1, 50_000))
        raw = orjson.dumps(doc)
        index = exp.send(names.ingest, raw, [(header, b"engine_execution")])
        exp.dead[(index, None)] = ("oversized", raw)

    # 11. A few events published twice on purpose: the router does not deduplicate
    # (that is the consumers' job), so each copy must come out once.
    for _ in range(100):
        event_type, doc = next(stream)
        for _ in range(2):
            exp.send(names.ingest, orjson.dumps(doc), [(header, event_type.encode())])
            exp.valid(event_type, doc)
    return exp


def test_every_event_lands_in_exactly_one_place(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **isolated_env,
        "ENGINESTREAM_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
        "ENGINESTREAM_DEAD_LETTER_KEEP_BYTES": str(KEEP_BYTES),
    }
    settings = Settings.from_env(env)
    names = TopicNames(settings.topic_prefix)
    asyncio.run(ensure_topics(settings))
    exp = build_input(names, random.Random(20261126))
    assert len(exp.messages) >= 10_000

    worker = WorkerProcess(env, log_path=tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        sent = asyncio.run(produce_all(settings.bootstrap_servers, exp.messages))
        expected_events = sum(exp.events.values())
        expected_dead = len(exp.dead)

        def routed(record: Any) -> int:
            value = orjson.loads(record.value)
            docs = value if isinstance(value, list) else [value]
            # Samples with lineage are the training agent's, made from comparisons.
            return sum(1 for doc in docs if "lineage" not in doc)

        def complete(records: list[Any]) -> bool:
            dead = sum(
                1
                for r in records
                if r.topic == names.dead_letter
                and orjson.loads(r.value)["source"]["topic"] in names.inputs()
            )
            typed = sum(routed(r) for r in records if r.topic != names.dead_letter)
            return dead >= expected_dead and typed >= expected_events

        outputs = [*names.typed.values(), names.dead_letter]
        records = asyncio.run(
            read_until(settings.bootstrap_servers, outputs, complete, timeout=240)
        )
        status, stats = worker.get_json("/stats")
    finally:
        worker.stop()

    # Every valid event is on its typed topic exactly once, on its key's partition.
    type_of_topic = {topic: t for t, topic in names.typed.items()}
    partitions = settings.partitions
    got_events: Counter[tuple[str, bytes]] = Counter()
    for record in records:
        if record.topic == names.dead_letter:
            continue
        event_type = type_of_topic[record.topic]
        key_field = EVENT_ROUTES[event_type].key_field
        value = orjson.loads(record.value)
        docs = value if isinstance(value, list) else [value]
        if not isinstance(value, list):
            assert record.key == docs[0][key_field].encode()
        for doc in docs:
            assert partition_for(doc[key_field].encode(), partitions) == record.partition
            if event_type == "training_sample" and "lineage" in doc:
                continue  # made by the training agent from a comparison, not routed
            got_events[(event_type, canonical(doc))] += 1
    assert got_events == exp.events

    # Every refused event or message is one dead letter, with reason and original bytes.
    registry = default_registry()
    where = {i: s for i, s in enumerate(sent)}
    expected_by_id = {}
    for (index, batch_index), (reason, original) in exp.dead.items():
        s = where[index]
        bi = "-" if batch_index is None else str(batch_index)
        expected_by_id[f"{s.topic}/{s.partition}/{s.offset}/{bi}"] = (reason, original)
    # The router's dead letters (later stages, e.g. the job table, write their own).
    inputs = set(names.inputs())
    letters = [
        letter
        for r in records
        if r.topic == names.dead_letter
        and (letter := orjson.loads(r.value))["source"]["topic"] in inputs
    ]
    ids = [letter["id"] for letter in letters]
    assert len(ids) == len(set(ids)), "a dead letter was written twice"
    assert set(ids) == set(expected_by_id)
    reasons: Counter[str] = Counter()
    for letter in letters:
        assert registry.check("dead_letter", letter) is None, letter
        reason, original = expected_by_id[letter["id"]]
        assert letter["reason"] == reason, letter
        kept = base64.b64decode(letter["original"])
        if reason == "oversized":
            assert kept == original[:KEEP_BYTES]
            assert letter["original_size"] == len(original)
            assert letter["original_truncated"] is True
        elif reason == "confidentiality":
            assert orjson.loads(kept) == orjson.loads(original)
        else:
            assert kept == original
        assert letter["error"]["message"]
        reasons[reason] += 1

    # No prompt text on any output topic.
    assert not any(SECRET.encode() in r.value for r in records)
    assert all(
        SECRET not in base64.b64decode(orjson.loads(r.value)["original"]).decode(errors="replace")
        for r in records
        if r.topic == names.dead_letter
    )

    # The worker's own counts add up to the same.
    assert status == 200
    router = stats["router"]  # type: ignore[index]
    assert sum(router["messages_in"].values()) == len(exp.messages)
    assert sum(router["events_routed"].values()) == sum(exp.events.values())
    assert router["dead_letters"] == dict(reasons)
    expected_reasons = Counter(reason for reason, _ in exp.dead.values())
    assert reasons == expected_reasons
