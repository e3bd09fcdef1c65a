"""Input for the state tests (jobs, sessions, engine status) and what it must produce.

Every entity (job, session, engine) has a scripted life: the documents published for
it, in order, each with what must become of it (applied, or which dead letter). The
expected records are computed offline with the project's pure logic (streams.domain.jobs,
streams.domain.sessions, streams.domain.engine_status) over the same documents in the same order.

Publishing keeps each entity's documents in order: every document of one entity goes
to the same partition of the same input topic (the partition its id hashes to), as
single messages keyed by the id or inside batches of one event type, so the typed
topic's partition holds them in the published order — the order the worker applies.
"""

from __future__ import annotations

import base64
import contextlib
import random
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.config.topics import TopicNames
from streams.domain.engine_status import EngineStatus
from streams.domain.jobs import Job, TransitionError, apply_command
from streams.domain.sessions import Session
from streams.durable.exactly_once import SourceLedger, parse_ledger_key
from streams.kafka.fleet import Fleet
from streams.kafka.partitioner import partition_for
from tests.integration.kafka_io import read_until

SECRET = f"CONFIDENTIAL-PROMPT-{uuid.uuid4().hex}"  # unique to the run
HEADER = "event-type"
PARTITIONS = 4

# What becomes of a published document.
OK = "ok"
INVALID_TRANSITION = "invalid_transition"
SCHEMA_VIOLATION = "schema_violation"
CONFIDENTIALITY = "confidentiality"

Message = tuple[str, bytes, list[tuple[str, bytes]], bytes | None, int]


def canonical(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def plain(doc: Any) -> Any:
    """`doc` as it comes back from a JSON view."""
    return orjson.loads(orjson.dumps(doc))


# ---- documents with their fate -------------------------------------------------------


@dataclass
class Doc:
    """One published document. `fate` is OK, or the dead-letter reason; `rule` is the
    rule a refused job command breaks; `removed` the fields a confidentiality dead
    letter must name."""

    doc: dict[str, Any]
    fate: str = OK
    rule: str | None = None
    removed: tuple[str, ...] = ()
    as_field: bool = False  # type named by the event_type field instead of the header

    def stored(self) -> dict[str, Any]:
        """What a dead letter's `original` must hold (content fields removed)."""
        return {k: v for k, v in self.doc.items() if k not in self.removed}


@dataclass
class Channel:
    """How an entity's documents travel: to `topic` (ingest or its raw topic), as
    single messages keyed by the entity id or in batches of up to `batch` events."""

    topic: str
    batch: int = 1


@dataclass
class Lives:
    """Scripted lives of the entities of one event type."""

    event_type: str
    docs: dict[str, list[Doc]] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)

    def add(self, entity: str, channel: Channel, docs: Iterable[Doc]) -> None:
        self.docs.setdefault(entity, []).extend(docs)
        self.channels[entity] = channel

    def absorb(self, other: Lives) -> None:
        """Take in the entities of `other` (published later)."""
        for entity, docs in other.docs.items():
            self.add(entity, other.channels[entity], docs)

    def applied(self, entity: str) -> list[dict[str, Any]]:
        """The documents of `entity` that reach its typed topic, in order."""
        return [d.doc for d in self.docs[entity] if d.fate in (OK, INVALID_TRANSITION)]

    def messages(self, rng: random.Random, names: TopicNames) -> list[Message]:
        """Every document as Kafka messages, each entity's in order (see module doc)."""
        order = [e for e, docs in self.docs.items() for _ in docs]
        rng.shuffle(order)  # interleave entities; each keeps its own order below
        cursor: Counter[str] = Counter()
        pending: dict[tuple[str, int], list[Doc]] = {}
        out: list[Message] = []

        def flush(lane: tuple[str, int]) -> None:
            docs = pending.pop(lane, [])
            if not docs:
                return
            headers = [] if lane[0] != names.ingest else [(HEADER, self.event_type.encode())]
            out.append((lane[0], orjson.dumps([d.doc for d in docs]), headers, None, lane[1]))

        for entity in order:
            item = self.docs[entity][cursor[entity]]
            cursor[entity] += 1
            channel = self.channels[entity]
            lane = (channel.topic, partition_for(entity.encode(), PARTITIONS))
            if channel.batch > 1:
                pending.setdefault(lane, []).append(item)
                if len(pending[lane]) >= rng.randint(2, channel.batch):
                    flush(lane)
                continue
            flush(lane)  # a single message must not overtake the lane's open batch
            doc, headers = item.doc, []
            if channel.topic == names.ingest:
                if item.as_field:
                    doc = {**doc, "event_type": self.event_type}
                else:
                    headers = [(HEADER, self.event_type.encode())]
            out.append((channel.topic, orjson.dumps(doc), headers, entity.encode(), lane[1]))
        for lane in list(pending):
            flush(lane)
        return out


def merge(rng: random.Random, *streams: list[Message]) -> list[Message]:
    """Interleave message lists at random, each list keeping its own order."""
    order = [i for i, stream in enumerate(streams) for _ in stream]
    rng.shuffle(order)
    cursors = [0] * len(streams)
    out = []
    for i in order:
        out.append(streams[i][cursors[i]])
        cursors[i] += 1
    return out


# ---- jobs ----------------------------------------------------------------------------


def _cmd(name: str, job: str, at: float, **fields: Any) -> dict[str, Any]:
    return {"command": name, "job_id": job, "timestamp": at, **fields}


def _submit(job: str, at: float, kind: str, **fields: Any) -> dict[str, Any]:
    return _cmd("submit", job, at, kind=kind, target=fields.pop("target", "model-a"), **fields)


def ok(doc: dict[str, Any], **kw: Any) -> Doc:
    return Doc(doc, **kw)


def refused(rule: str, doc: dict[str, Any]) -> Doc:
    return Doc(doc, INVALID_TRANSITION, rule)


def job_lives(rng: random.Random, names: TopicNames, t0: float) -> tuple[Lives, dict[str, str]]:
    """Jobs through every legal and illegal transition; answers the lives and a name
    for each scripted job id."""
    lives = Lives("ml_job_command")
    label: dict[str, str] = {}
    channels = [
        Channel(names.ingest),
        Channel(names.raw["ml_job_command"]),
        Channel(names.ingest, batch=4),
    ]

    def job(name: str, docs: list[Doc], channel: Channel | None = None) -> str:
        job_id = docs[0].doc["job_id"]
        label[job_id] = name
        lives.add(job_id, channel or rng.choice(channels), docs)
        return job_id

    def new_id() -> str:
        return f"{rng.getrandbits(128):032x}"

    t = t0
    j = new_id()
    job("train completed, then refused", [
        ok(_submit(j, t, "train", spec='{"epochs": 3, "lr": 0.001}')),
        ok(_cmd("start", j, t + 1.25)),
        ok(_cmd("progress", j, t + 2, progress=10)),
        ok(_cmd("progress", j, t + 3.5, progress=55)),
        ok(_cmd("progress", j, t + 4, progress=40)),  # may go down while running
        ok(_cmd("complete", j, t + 60.125, metrics='{"loss": 0.12, "accuracy": 0.97}')),
        refused("terminal_is_final", _cmd("start", j, t + 61)),
        refused("terminal_is_final", _cmd("progress", j, t + 62, progress=20)),
        refused("job_exists", _submit(j, t + 63, "train")),
        refused("terminal_is_final", _cmd("cancel", j, t + 64, reason="too late")),
    ], Channel(names.ingest))
    j = new_id()
    job("train completed without metrics or spec", [
        ok(_submit(j, t + 5, "train", target="model-b"), as_field=True),
        ok(_cmd("start", j, t + 6.001), as_field=True),
        ok(_cmd("complete", j, t + 7.5), as_field=True),
    ], Channel(names.ingest))
    j = new_id()
    job("backfill completed", [
        ok(_submit(j, t + 8, "backfill", target="features-v2", spec='{"days": 30}')),
        ok(_cmd("start", j, t + 9)),
        ok(_cmd("progress", j, t + 10, progress=100)),
        ok(_cmd("complete", j, t + 11, metrics='{"rows": 123456}')),
    ])
    j = new_id()
    job("train failed, then refused", [
        ok(_submit(j, t + 12, "train")),
        ok(_cmd("start", j, t + 13)),
        ok(_cmd("progress", j, t + 14, progress=30)),
        ok(_cmd("fail", j, t + 15.75, error="diverged at step 1200")),
        refused("terminal_is_final", _cmd("complete", j, t + 16, metrics="{}")),
        refused("terminal_is_final", _cmd("start", j, t + 17)),
    ])
    j = new_id()
    job("train cancelled while queued, then refused", [
        ok(_submit(j, t + 18, "train")),
        ok(_cmd("cancel", j, t + 19, reason="superseded")),
        refused("terminal_is_final", _cmd("complete", j, t + 20, metrics="{}")),
        refused("terminal_is_final", _cmd("progress", j, t + 21, progress=10)),
        refused("terminal_is_final", _cmd("start", j, t + 22)),
    ], Channel(names.raw["ml_job_command"]))
    j = new_id()
    job("backfill cancelled while running, then refused", [
        ok(_submit(j, t + 23, "backfill")),
        ok(_cmd("start", j, t + 24)),
        ok(_cmd("progress", j, t + 25, progress=20)),
        ok(_cmd("cancel", j, t + 26)),
        refused("terminal_is_final", _cmd("fail", j, t + 27, error="late failure")),
    ], Channel(names.ingest, batch=3))
    j = new_id()
    job("train queued, refused until started", [
        ok(_submit(j, t + 28, "train")),
        refused("not_running", _cmd("progress", j, t + 29, progress=5)),
        refused("illegal_transition", _cmd("complete", j, t + 30, metrics="{}")),
        refused("illegal_transition", _cmd("fail", j, t + 31, error="never ran")),
        refused("job_exists", _submit(j, t + 32, "backfill")),
    ])
    j = new_id()
    job("backfill running, started twice, progress 101", [
        ok(_submit(j, t + 33, "backfill")),
        ok(_cmd("start", j, t + 34)),
        refused("illegal_transition", _cmd("start", j, t + 35)),
        ok(_cmd("progress", j, t + 36, progress=70)),
        Doc(_cmd("progress", j, t + 37, progress=101), SCHEMA_VIOLATION, "maximum"),
    ], Channel(names.ingest))
    j = new_id()
    job("train finished before it started (clocks disagree)", [
        ok(_submit(j, t + 38, "train")),
        ok(_cmd("start", j, t + 140)),
        ok(_cmd("complete", j, t + 90, metrics='{"note": "skewed clocks"}')),
    ])
    j = new_id()
    job("never submitted", [
        refused("unknown_job", _cmd("start", j, t + 41)),
        refused("unknown_job", _cmd("progress", j, t + 42, progress=5)),
        refused("unknown_job", _cmd("complete", j, t + 43)),
        refused("unknown_job", _cmd("cancel", j, t + 44)),
    ])
    j = new_id()
    job("submitted at a time past 2100 (milliseconds for seconds, say)", [
        Doc(_submit(j, 1e300, "train"), SCHEMA_VIOLATION, "exclusiveMaximum"),
        refused("unknown_job", _cmd("start", j, t + 45)),
    ], Channel(names.raw["ml_job_command"]))
    ordinary = fleet_jobs(rng, names, t + 100, 16)  # ordinary traffic besides the script
    lives.absorb(ordinary)
    label.update({job_id: "fleet job" for job_id in ordinary.docs})
    return lives, label


def fleet_jobs(rng: random.Random, names: TopicNames, t0: float, count: int) -> Lives:
    """`count` ordinary job lives (Fleet.job_commands: submit, start, progress,
    complete or fail)."""
    lives = Lives("ml_job_command")
    fleet = Fleet(rng=rng)
    for i in range(count):
        fleet.clock = t0 + 10 * i
        commands = fleet.job_commands()
        channel = rng.choice([Channel(names.ingest), Channel(names.ingest, batch=3)])
        lives.add(commands[0]["job_id"], channel, [ok(c) for c in commands])
    return lives


def expected_jobs(lives: Lives) -> dict[str, Job | None]:
    """Each job as streams.domain.jobs.apply_command leaves it after its commands, checking
    on the way that every refusal is the scripted one."""
    jobs: dict[str, Job | None] = {}
    for job_id, docs in lives.docs.items():
        current: Job | None = None
        for item in docs:
            if item.fate == SCHEMA_VIOLATION:
                continue  # never reaches ml.jobs
            try:
                current = apply_command(current, item.doc)
                assert item.fate == OK, (item, "was accepted offline")
            except TransitionError as exc:
                assert (item.fate, item.rule) == (INVALID_TRANSITION, exc.rule), (item, exc)
        jobs[job_id] = current
    return jobs


# ---- sessions ------------------------------------------------------------------------


def session_lives(
    rng: random.Random, names: TopicNames, t0: float, count: int, tag: str = ""
) -> Lives:
    """`count` generated sessions (Fleet.session_events), plus hand-written edge cases."""
    lives = Lives("session_event")
    channels = [
        Channel(names.ingest, batch=30),
        Channel(names.raw["session_event"], batch=12),
        Channel(names.ingest),
    ]
    fleet = Fleet(rng=rng)
    for i in range(count):
        fleet.clock = round(t0 + 0.37 * i, 3)
        events = fleet.session_events()
        sid = events[0]["session_id"] + tag
        lives.add(sid, rng.choice(channels), [ok({**e, "session_id": sid}) for e in events])
    if tag:
        return lives
    s = "sess-edge-late-start"
    lives.add(s, Channel(names.ingest, batch=5), [
        ok({"event": "inference_recorded", "session_id": s, "timestamp": t0 + 1,
            "model_id": "qwen3-4b", "version": "1.0", "latency_ms": 31.5}),
        ok({"event": "session_started", "session_id": s, "timestamp": t0 + 2,
            "device_id": "dev-edge", "platform": "android", "sdk_version": "0.2.0"}),
        ok({"event": "inference_recorded", "session_id": s, "timestamp": t0 + 1.5,
            "model_id": "qwen3-4b", "version": "1.1", "latency_ms": 12.25}),
        ok({"event": "error_recorded", "session_id": s, "timestamp": t0 + 3,
            "model_id": "qwen3-4b", "message": "out of memory"}),
        ok({"event": "error_recorded", "session_id": s, "timestamp": t0 + 4,
            "message": "connection reset by registry"}),
        ok({"event": "error_recorded", "session_id": s, "timestamp": t0 + 4.5,
            "model_id": "never-ran", "message": "out of memory"}),
        ok({"event": "session_ended", "session_id": s, "timestamp": t0 + 5}),
        ok({"event": "inference_recorded", "session_id": s, "timestamp": t0 + 6,
            "model_id": "qwen3-4b", "version": "1.0", "latency_ms": 99.0}),
        ok({"event": "error_recorded", "session_id": s, "timestamp": t0 + 7,
            "message": "after the end"}),
    ])
    s = "sess-edge-far-future"  # an event whose time no record can hold is refused
    lives.add(s, Channel(names.ingest, batch=3), [
        ok({"event": "session_started", "session_id": s, "timestamp": t0 + 1,
            "device_id": "dev-far", "platform": "linux", "sdk_version": "0.1.0"}),
        Doc({"event": "inference_recorded", "session_id": s, "timestamp": 1e308,
             "model_id": "qwen3-4b", "version": "1.0", "latency_ms": 5.0}, SCHEMA_VIOLATION,
            "exclusiveMaximum"),
        ok({"event": "session_ended", "session_id": s, "timestamp": t0 + 3}),
    ])
    s = "sess-edge-overflow"  # latencies that would make the totals inf: out of range
    lives.add(s, Channel(names.raw["session_event"], batch=4), [
        ok({"event": "session_started", "session_id": s, "timestamp": t0 + 1,
            "device_id": "dev-slow", "platform": "linux", "sdk_version": "0.1.0"}),
        Doc({"event": "inference_recorded", "session_id": s, "timestamp": t0 + 2,
             "model_id": "qwen3-4b", "version": "1.0", "latency_ms": 1e308}, SCHEMA_VIOLATION,
            "maximum"),
        Doc({"event": "inference_recorded", "session_id": s, "timestamp": t0 + 3,
             "model_id": "qwen3-4b", "version": "1.0", "latency_ms": 1e308}, SCHEMA_VIOLATION,
            "maximum"),
        ok({"event": "inference_recorded", "session_id": s, "timestamp": t0 + 4,
            "model_id": "qwen3-4b", "version": "1.0", "latency_ms": 3.5}),
    ])
    s = "sess-edge-open"
    lives.add(s, Channel(names.raw["session_event"]), [
        ok({"event": "session_started", "session_id": s, "timestamp": t0 + 1,
            "device_id": "dev-open", "platform": "ios", "sdk_version": "0.1.0",
            "hardware": {"has_gpu": False, "has_npu": True, "npu_type": "ane",
                         "thermal_state": "nominal"}}),
        ok({"event": "inference_recorded", "session_id": s, "timestamp": t0 + 2,
            "model_id": "phi-4-mini", "version": "2.0", "latency_ms": 7.125}),
    ])
    return lives


def expected_sessions(lives: Lives) -> dict[str, Session]:
    """Each session as streams.domain.sessions.Session folds its events."""
    found = {}
    for sid in lives.docs:
        events = lives.applied(sid)
        session = Session.from_event(events[0])
        for event in events[1:]:
            session.apply(event)
        found[sid] = session
    return found


# ---- engine status (and the confidential lifecycle events) ---------------------------


LEAKS: tuple[dict[str, Any], ...] = (
    {"prompt": f"tell me about {SECRET}"},
    {"completion": f"here is {SECRET}, as asked"},
    {"messages": [{"role": "user", "content": SECRET}]},
    {"prompt": SECRET, "completion": SECRET, "messages": [SECRET]},
)


def leak(doc: dict[str, Any], extra: dict[str, Any]) -> Doc:
    return Doc({**doc, **extra}, CONFIDENTIALITY, removed=tuple(sorted(extra)))


def engine_lives(rng: random.Random, names: TopicNames, t0: float, tag: str = "") -> Lives:
    """Lifecycle events of seven engines: starts, loads, warm-ups, requests, errors,
    stops, some out of order or with equal times, and some carrying prompt text (alone
    and inside batches of valid events). engine-leak-only sends nothing else."""
    lives = Lives("engine_event")
    fleet = Fleet(rng=rng)
    channels = [
        Channel(names.ingest, batch=8),
        Channel(names.ingest, batch=8),
        Channel(names.ingest, batch=5),
        Channel(names.ingest),
        Channel(names.raw["engine_event"], batch=6),
        Channel(names.raw["engine_event"]),
    ]
    for n, channel in enumerate(channels):
        engine = f"engine-st-{n}{tag}"
        t = t0
        docs: list[Doc] = []
        fleet.clock = t
        if n == 5:  # engine-st-5 is first seen serving requests
            docs.append(ok(fleet.request_served(engine)))
        else:
            docs.append(ok({"event": "EngineStarted", "engine_id": engine, "timestamp": t,
                            "model": "qwen3-4b", "port": 11_000 + n}))
        for _ in range(40):
            roll = rng.random()
            if roll < 0.1:
                fleet.clock = round(t - rng.uniform(0.5, 20), 3)  # out of order: stale
            else:
                t = round(t + rng.choice((0.0, 0.25, 1.0, 2.5)), 3)
                fleet.clock = t
            serving = rng.random() < 0.55
            doc = fleet.request_served(engine) if serving else fleet.lifecycle(engine)
            if rng.random() < 0.15:
                docs.append(leak(doc, rng.choice(LEAKS)))
            else:
                docs.append(ok(doc))
        lives.add(engine, channel, docs)
    if tag:
        return lives
    engine = "engine-leak-only"
    fleet.clock = t0
    lives.add(engine, Channel(names.ingest), [
        leak(fleet.request_served(engine), extra) for extra in LEAKS
    ])
    return lives


def expected_engines(lives: Lives) -> dict[str, EngineStatus | None]:
    """Each engine as streams.domain.engine_status.EngineStatus folds its valid events."""
    found: dict[str, EngineStatus | None] = {}
    for engine in lives.docs:
        events = lives.applied(engine)
        if not events:
            found[engine] = None
            continue
        status = EngineStatus.from_event(events[0])
        for event in events[1:]:
            status.apply(event)
        found[engine] = status
    return found


def execution_messages(rng: random.Random, names: TopicNames, count: int) -> list[Message]:
    """Ordinary executions in historical event time over ten minutes (so that their
    windows close at once), in batches on engine.ingest."""
    fleet = Fleet(rng=rng, engines=5)
    docs = []
    for i in range(count):
        fleet.clock = 1_700_000_000 + 600 * i / count
        docs.append(fleet.execution())
    out: list[Message] = []
    for i in range(0, count, 50):
        out.append((names.ingest, orjson.dumps(docs[i : i + 50]),
                    [(HEADER, b"engine_execution")], None, i // 50 % PARTITIONS))
    return out


# ---- dead letters --------------------------------------------------------------------


def dead_letter_key(letter: dict[str, Any]) -> tuple[str, str, str | None, bytes]:
    """(reason, event type, rule or removed fields, canonical original without its
    event_type field) — what a dead letter is matched on."""
    original = orjson.loads(base64.b64decode(letter["original"]))
    if isinstance(original, dict):
        original.pop("event_type", None)
    if letter["reason"] == CONFIDENTIALITY:
        detail = ",".join(letter.get("removed_fields", []))
    else:
        detail = letter["error"].get("rule")
    return (letter["reason"], letter.get("event_type"), detail, canonical(original))


def expected_dead_letters(lives: Lives) -> Counter[tuple[str, str, str | None, bytes]]:
    want: Counter[tuple[str, str, str | None, bytes]] = Counter()
    for docs in lives.docs.values():
        for item in docs:
            if item.fate == OK:
                continue
            detail = ",".join(item.removed) if item.fate == CONFIDENTIALITY else item.rule
            want[(item.fate, lives.event_type, detail, canonical(item.stored()))] += 1
    return want


# ---- the worker's views --------------------------------------------------------------


def http(
    url: str, method: str = "GET", body: bytes | None = None, token: str | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """One HTTP call; answers (status, body bytes) whatever the status."""
    if method == "POST" and body is None:
        body = b""
    request = urllib.request.Request(url, data=body, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get(base: str, path: str) -> tuple[int, Any]:
    """GET a view: (status, decoded JSON), or the text of an answer that is not JSON."""
    status, body = http(base + path)
    try:
        return status, orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return status, body.decode(errors="replace")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout}s")
        time.sleep(0.2)


# ---- the broker ----------------------------------------------------------------------


async def lag(bootstrap: str, group: str, topics: list[str]) -> int:
    """Messages of `topics` the consumer group has not committed yet."""
    return sum((await lagging(bootstrap, group, topics)).values())


async def lagging(bootstrap: str, group: str, topics: list[str]) -> dict[str, int]:
    """The partitions of `topics` the group has not committed to their ends, each
    ("topic[partition] committed/end") with the number of messages behind."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        tps = []
        for topic in topics:
            found = consumer.partitions_for_topic(topic)
            while not found:
                await consumer._client.force_metadata_update()
                found = consumer.partitions_for_topic(topic)
            tps += [TopicPartition(topic, p) for p in sorted(found)]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group)
        behind = {}
        for tp, end in ends.items():
            done = committed[tp].offset if tp in committed else 0
            if end > done:
                behind[f"{tp.topic}[{tp.partition}] {done}/{end}"] = end - done
        return behind
    finally:
        await consumer.stop()
        await admin.close()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The end offset of each partition of `topic`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        found = consumer.partitions_for_topic(topic)
        while not found:
            await consumer._client.force_metadata_update()
            found = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(found)]
        return {tp.partition: end for tp, end in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def applied_offsets(bootstrap: str, changelog: str) -> dict[int, int]:
    """Per source partition, the last offset a keyed-state changelog says is applied."""
    records = await read_until(bootstrap, [changelog], lambda r: True, 30)
    saved: dict[int, int] = {}
    for record in records:
        source = parse_ledger_key(record.key or b"")
        if source is not None and record.value is not None:
            saved[source[1]] = SourceLedger.from_bytes(record.value).last
    return saved


async def topics_of(bootstrap: str, prefixes: tuple[str, ...]) -> list[str]:
    """Every topic on the broker whose name starts with one of `prefixes`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return sorted(t for t in await consumer.topics() if t.startswith(prefixes))
    finally:
        await consumer.stop()


def decoded_originals(value: bytes) -> list[bytes]:
    """The base64 `original` fields anywhere in a JSON document, decoded."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return []
    found: list[bytes] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, item in node.items():
                if key == "original" and isinstance(item, str):
                    with contextlib.suppress(ValueError):
                        found.append(base64.b64decode(item, validate=True))
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    return found


def holds_secret(value: bytes | None, secret: bytes = SECRET.encode()) -> bool:
    """True when `value` holds the secret, in clear or inside a base64 `original`."""
    if not value:
        return False
    return secret in value or any(secret in o for o in decoded_originals(value))
