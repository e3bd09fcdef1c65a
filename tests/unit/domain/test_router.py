"""Router tests: every inbound message ends in exactly one place, and dead letters explain why.

Pure logic, no broker: `Router.route` gets one Kafka message at a time. Every routed event
must be valid against its JSON Schema and keyed by its entity id; every dead letter must be
a valid `dead_letter` document whose verdict agrees with jsonschema; a lifecycle event's
content never reaches a dead letter. Property tests feed arbitrary bytes, arbitrary JSON and
mutated valid events and compare the router with an independent oracle.
"""

from __future__ import annotations

import base64
import copy
import math
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as label
from hypothesis import strategies as st
from jsonschema import Draft7Validator, ValidationError
from jsonschema.exceptions import best_match

from streams.config.topics import EVENT_ROUTES, TopicNames
from streams.domain.avro_codec import AVRO_MAGIC, encode_container
from streams.domain.router import (
    CONFIDENTIALITY,
    DECODE_ERROR,
    MALFORMED_JSON,
    NOT_AN_OBJECT,
    OVERSIZED,
    SCHEMA_VIOLATION,
    UNKNOWN_EVENT_TYPE,
    DeadLetter,
    Inbound,
    Router,
    Routing,
)
from streams.domain.validation import SchemaRegistry

SCHEMA_DIR = Path(__file__).parents[3] / "schemas" / "v1"
EXAMPLES_DIR = SCHEMA_DIR / "examples"

NAMES = TopicNames()
REGISTRY = SchemaRegistry()
ROUTER = Router(NAMES, REGISTRY)
NOW = 1_700_000_000.25
ROUTABLE = list(EVENT_ROUTES)
SECRET = "SECRET-PROMPT-TEXT"

SCHEMAS: dict[str, dict[str, Any]] = {
    p.stem: orjson.loads(p.read_bytes()) for p in sorted(SCHEMA_DIR.glob("*.json"))
}
# Independent jsonschema validators (the routable schemas and dead_letter use no formats).
VALIDATORS = {name: Draft7Validator(schema) for name, schema in SCHEMAS.items()}


def example_paths(event_type: str, kind: str) -> list[Path]:
    return sorted((EXAMPLES_DIR / event_type / kind).glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    return doc


def examples(kind: str) -> list[tuple[str, Path]]:
    return [(t, p) for t in ROUTABLE for p in example_paths(t, kind)]


def ids(params: Iterable[tuple[str, Path]]) -> list[str]:
    return [f"{t}/{p.stem}" for t, p in params]


VALID_DOCS: dict[str, list[dict[str, Any]]] = {
    t: [load(p) for p in example_paths(t, "valid")] for t in ROUTABLE
}
SEED = load(EXAMPLES_DIR / "engine_execution" / "valid" / "seed.json")
REQUEST_SERVED = load(EXAMPLES_DIR / "engine_event" / "valid" / "request_served.json")


def pointer(error: ValidationError) -> str:
    parts = (str(p).replace("~", "~0").replace("/", "~1") for p in error.absolute_path)
    return "".join("/" + p for p in parts)


def strip_type(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "event_type"}


def drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_none(v) for v in value]
    return value


def lifecycle_extras(doc: dict[str, Any]) -> list[str]:
    """Fields an engine_event may not carry, derived from the schema (not the registry)."""
    variants = {
        c["if"]["properties"]["event"]["const"]: set(c["then"]["properties"])
        for c in SCHEMAS["engine_event"]["allOf"]
    }
    variant = doc.get("event")
    allowed = variants.get(variant) if isinstance(variant, str) else None
    if allowed is None:
        allowed = set().union(*variants.values())
    return sorted(k for k in doc if k not in allowed)


def check_dead_letter(dl: DeadLetter) -> dict[str, Any]:
    """The dead letter's record is a valid dead_letter document that says what it holds."""
    record = dl.to_record(NOW)
    assert REGISTRY.check("dead_letter", record) is None, record
    assert VALIDATORS["dead_letter"].is_valid(record), record
    index = "-" if dl.batch_index is None else str(dl.batch_index)
    src = dl.source
    assert record["id"] == f"{src.topic}/{src.partition}/{src.offset}/{index}"
    assert record["reason"] == dl.reason
    assert base64.b64decode(record["original"], validate=True) == dl.original
    assert record["source"] == {
        "topic": src.topic,
        "partition": src.partition,
        "offset": src.offset,
        "batch_index": dl.batch_index,
        "message_timestamp_ms": src.timestamp_ms,
    }
    assert record["original_size"] >= len(dl.original)
    assert record["original_truncated"] is (record["original_size"] > len(dl.original))
    assert record["dead_lettered_at"] == NOW
    return record


def route(
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] = (),
    topic: str | None = None,
    router: Router = ROUTER,
    offset: int = 1042,
    timestamp_ms: int | None = 1670000000123,
) -> Routing:
    """Route one message and check the invariants every outcome must satisfy."""
    msg = Inbound(topic or NAMES.ingest, 3, offset, value, tuple(headers), timestamp_ms)
    out = router.route(msg)
    for dl in out.dead_letters:
        assert dl.source is msg
        check_dead_letter(dl)
    for event in out.events:
        assert event.event_type in EVENT_ROUTES
        assert "event_type" not in event.doc
        assert VALIDATORS[event.event_type].is_valid(event.doc), event.doc
        key = event.doc[EVENT_ROUTES[event.event_type].key_field]
        assert isinstance(key, str) and event.key == key
    return out


def header(event_type: str) -> list[tuple[str, bytes]]:
    return [("event-type", event_type.encode())]


def only_dead(out: Routing) -> DeadLetter:
    assert out.events == []
    assert len(out.dead_letters) == 1, [d.reason for d in out.dead_letters]
    return out.dead_letters[0]


# ------------------------------------------------------------ valid events --

ROUTE_MODES = ["header", "field", "raw_topic", "avro"]


@pytest.mark.parametrize("mode", ROUTE_MODES)
@pytest.mark.parametrize(("event_type", "path"), examples("valid"), ids=ids(examples("valid")))
def test_valid_example_routes(event_type: str, path: Path, mode: str) -> None:
    doc = load(path)
    expected = doc
    if mode == "header":
        out = route(path.read_bytes(), headers=header(event_type))
    elif mode == "field":
        out = route(orjson.dumps({**doc, "event_type": event_type}))
    elif mode == "raw_topic":
        out = route(path.read_bytes(), topic=NAMES.raw[event_type])
    else:
        out = route(encode_container(event_type, [doc]))
        expected = drop_none(doc)  # Avro cannot tell an absent optional field from null
    assert out.dead_letters == []
    assert len(out.events) == 1
    event = out.events[0]
    assert event.event_type == event_type
    assert event.key == doc[EVENT_ROUTES[event_type].key_field]
    assert event.doc == expected


@pytest.mark.parametrize("event_type", ROUTABLE)
def test_valid_batch_routes_in_order(event_type: str) -> None:
    docs = VALID_DOCS[event_type]
    for out, expected in (
        (route(orjson.dumps(docs), topic=NAMES.raw[event_type]), docs),
        (route(encode_container(event_type, docs)), [drop_none(d) for d in docs]),
    ):
        assert out.dead_letters == []
        assert [e.doc for e in out.events] == expected
        assert {e.event_type for e in out.events} == {event_type}


def test_header_name_is_case_insensitive() -> None:
    out = route(orjson.dumps(SEED), headers=[("Event-Type", b"engine_execution")])
    assert [e.event_type for e in out.events] == ["engine_execution"]


def test_event_type_field_matching_raw_topic_is_stripped() -> None:
    out = route(
        orjson.dumps({**SEED, "event_type": "engine_execution"}),
        topic=NAMES.raw["engine_execution"],
    )
    assert [e.doc for e in out.events] == [SEED]


def test_event_type_field_wins_over_header() -> None:
    out = route(
        orjson.dumps({**SEED, "event_type": "engine_execution"}), headers=header("session_event")
    )
    assert [e.event_type for e in out.events] == ["engine_execution"]


# ---------------------------------------------------------- invalid events --


@pytest.mark.parametrize("on", ["ingest", "raw_topic"])
@pytest.mark.parametrize(("event_type", "path"), examples("invalid"), ids=ids(examples("invalid")))
def test_invalid_example_is_dead_lettered(event_type: str, path: Path, on: str) -> None:
    value = path.read_bytes()
    doc = strip_type(load(path))
    if on == "ingest":
        out = route(value, headers=header(event_type))
    else:
        out = route(value, topic=NAMES.raw[event_type])
    errors = list(VALIDATORS[event_type].iter_errors(doc))
    if not errors:
        # event_type is the envelope's field: the router strips it, and what is left is valid
        assert path.stem == "event_type_field"
        assert [e.doc for e in out.events] == [doc]
        return
    dl = only_dead(out)
    assert dl.event_type == event_type
    assert dl.batch_index is None
    extras = lifecycle_extras(doc) if event_type == "engine_event" else []
    if extras:
        assert dl.reason == CONFIDENTIALITY
        assert dl.removed_fields == extras
        assert {(e.validator, pointer(e)) for e in errors} == {("additionalProperties", "")}
        kept = orjson.loads(dl.original)
        assert kept == {k: v for k, v in doc.items() if k not in extras}
        for field in extras:
            assert orjson.dumps(doc[field]) not in orjson.dumps(dl.to_record(NOW))
        return
    assert dl.reason == SCHEMA_VIOLATION
    best = best_match(errors)
    assert dl.violation is not None
    assert (dl.violation.rule, dl.violation.path) == (best.validator, pointer(best))
    assert (dl.violation.rule, dl.violation.path) in {(e.validator, pointer(e)) for e in errors}
    record = dl.to_record(NOW)
    assert record["error"]["rule"] == best.validator
    assert record["error"]["path"] == pointer(best)
    if event_type == "engine_event":
        assert orjson.loads(dl.original) == doc
    else:
        assert dl.original == value  # the exact bytes of a single-event message


def test_invalid_examples_cover_every_routable_type() -> None:
    assert {t for t, _ in examples("invalid")} == set(ROUTABLE)


# ------------------------------------------------------------------ batches --


def test_batch_mixing_valid_and_invalid() -> None:
    valid = VALID_DOCS["engine_execution"]
    bad_latency = copy.deepcopy(SEED)
    bad_latency["metrics"]["latency_ms"] = -1
    batch: list[Any] = [valid[0], bad_latency, valid[1], 42, {"engine_id": "x"}, valid[2]]
    out = route(orjson.dumps(batch), topic=NAMES.raw["engine_execution"], offset=99)
    assert [e.doc for e in out.events] == [valid[0], valid[1], valid[2]]
    assert [(d.batch_index, d.reason) for d in out.dead_letters] == [
        (1, SCHEMA_VIOLATION),
        (3, NOT_AN_OBJECT),
        (4, SCHEMA_VIOLATION),
    ]
    for dl in out.dead_letters:
        assert dl.batch_index is not None
        assert orjson.loads(dl.original) == batch[dl.batch_index]
        assert dl.id == f"{NAMES.raw['engine_execution']}/3/99/{dl.batch_index}"
    assert out.dead_letters[0].violation is not None
    assert out.dead_letters[0].violation.path == "/metrics/latency_ms"


def test_mixed_type_batch_on_ingest_accounts_for_every_event() -> None:
    rng = random.Random(7)
    batch: list[dict[str, Any]] = []
    for event_type, path in examples("valid") + examples("invalid"):
        batch.append({**load(path), "event_type": event_type})
    rng.shuffle(batch)
    out = route(orjson.dumps(batch))
    dead = [d.batch_index for d in out.dead_letters if d.batch_index is not None]
    assert len(dead) == len(out.dead_letters)
    assert dead == sorted(set(dead))  # each index once, in order
    assert all(0 <= i < len(batch) for i in dead)
    routed_expected = [strip_type(doc) for i, doc in enumerate(batch) if i not in set(dead)]
    assert [e.doc for e in out.events] == routed_expected
    assert len(out.events) + len(out.dead_letters) == len(batch)
    # one valid example per file plus the invalid one that is valid once event_type is stripped
    assert len(out.events) == len(examples("valid")) + 1
    for dl in out.dead_letters:
        assert dl.batch_index is not None
        member = batch[dl.batch_index]
        if dl.event_type != "engine_event":
            # a batch member's original is the member's own JSON, event_type included
            assert orjson.loads(dl.original) == member


def test_batch_member_with_mismatched_event_type_keeps_it_in_original() -> None:
    member = {**SEED, "event_type": "session_event"}
    out = route(orjson.dumps([SEED, member]), topic=NAMES.raw["engine_execution"])
    assert [e.doc for e in out.events] == [SEED]
    dl = only_dead(Routing(dead_letters=out.dead_letters))
    assert (dl.reason, dl.batch_index, dl.event_type) == (SCHEMA_VIOLATION, 1, "engine_execution")
    assert orjson.loads(dl.original) == member


def test_batch_elements_that_are_not_objects() -> None:
    batch: list[Any] = [1, "x", None, [], [SEED], True, 1.5, SEED]
    out = route(orjson.dumps(batch), headers=header("engine_execution"))
    assert [e.doc for e in out.events] == [SEED]
    assert [(d.reason, d.batch_index) for d in out.dead_letters] == [
        (NOT_AN_OBJECT, i) for i in range(7)
    ]
    for dl in out.dead_letters:
        assert dl.batch_index is not None
        assert orjson.loads(dl.original) == batch[dl.batch_index]


# ------------------------------------------------------ messages, not events --


@pytest.mark.parametrize(
    "value",
    [
        b"{",
        b'{"engine_id": "a",',
        b"{'a': 1}",
        b"NaN",
        b"[1, 2",
        b"\xff\xfe{}",
        b'{"a":1} x',
        b"\x00",
    ],
)
def test_malformed_json(value: bytes) -> None:
    dl = only_dead(route(value, headers=header("engine_execution")))
    assert dl.reason == MALFORMED_JSON
    assert dl.original == value
    assert dl.batch_index is None
    assert dl.id == f"{NAMES.ingest}/3/1042/-"


@pytest.mark.parametrize("value", [b"", None])
def test_empty_message_is_malformed(value: bytes | None) -> None:
    dl = only_dead(route(value, headers=header("engine_execution")))
    assert dl.reason == MALFORMED_JSON
    assert dl.original == b""
    assert dl.to_record(NOW)["original_size"] == 0


@pytest.mark.parametrize("value", [b"42", b'"text"', b"null", b"true", b"1.5", b"[]", b" [ ] "])
def test_message_that_is_no_object(value: bytes) -> None:
    dl = only_dead(route(value, headers=header("engine_execution")))
    assert dl.reason == NOT_AN_OBJECT
    assert dl.original == value
    assert dl.batch_index is None


@pytest.mark.parametrize(
    ("doc", "headers"),
    [
        (SEED, header("nope")),
        (SEED, header("window_stats")),
        (SEED, header("dead_letter")),
        (SEED, [("event-type", b"\xff\xfe")]),
        (SEED, []),
        (SEED, [("x-event-type", b"engine_execution")]),
        ({**SEED, "event_type": "unknown"}, header("engine_execution")),
        ({**SEED, "event_type": "dead_letter"}, []),
        ({**SEED, "event_type": 5}, header("engine_execution")),
        ({**SEED, "event_type": ["engine_execution"]}, []),
        ({**SEED, "event_type": {"a": 1}}, []),
    ],
)
def test_unknown_or_missing_event_type(
    doc: dict[str, Any], headers: list[tuple[str, bytes]]
) -> None:
    value = orjson.dumps(doc)
    dl = only_dead(route(value, headers=headers))
    assert dl.reason == UNKNOWN_EVENT_TYPE
    assert dl.original == value


def test_unknown_type_in_batch_names_index() -> None:
    out = route(orjson.dumps([SEED, {**SEED, "event_type": "nope"}]))
    assert out.events == []
    assert [(d.reason, d.batch_index) for d in out.dead_letters] == [
        (UNKNOWN_EVENT_TYPE, 0),
        (UNKNOWN_EVENT_TYPE, 1),
    ]


def test_event_type_disagreeing_with_raw_topic() -> None:
    value = orjson.dumps({**SEED, "event_type": "session_event"})
    dl = only_dead(route(value, topic=NAMES.raw["engine_execution"]))
    assert dl.reason == SCHEMA_VIOLATION
    assert dl.event_type == "engine_execution"
    assert dl.original == value
    assert "session_event" in dl.message


def test_raw_topic_ignores_event_type_header() -> None:
    out = route(
        orjson.dumps(SEED), headers=header("session_event"), topic=NAMES.raw["engine_execution"]
    )
    assert [e.event_type for e in out.events] == ["engine_execution"]


def _padded_seed(size: int) -> bytes:
    doc = dict(SEED, input="")
    doc["input"] = "x" * (size - len(orjson.dumps(doc)))
    value = orjson.dumps(doc)
    assert len(value) == size
    return value


def test_oversized_message() -> None:
    router = Router(NAMES, REGISTRY, max_message_bytes=1000, dead_letter_keep_bytes=100)
    fits = _padded_seed(1000)
    assert len(route(fits, headers=header("engine_execution"), router=router).events) == 1
    value = orjson.dumps([orjson.loads(fits)])  # a batch of one valid event, 1002 bytes
    dl = only_dead(route(value, headers=header("engine_execution"), router=router))
    assert dl.reason == OVERSIZED
    assert dl.original == value[:100]
    assert dl.original_size == len(value)
    record = dl.to_record(NOW)
    assert record["original_size"] == len(value) == 1002
    assert record["original_truncated"] is True
    assert base64.b64decode(record["original"]) == value[:100]


def test_oversized_garbage_is_oversized_not_malformed() -> None:
    router = Router(NAMES, REGISTRY, max_message_bytes=1000)
    value = b"\xff" * 5000
    dl = only_dead(route(value, router=router))
    assert dl.reason == OVERSIZED
    assert dl.original == value[: router.dead_letter_keep_bytes] == value  # keep > size here
    assert dl.to_record(NOW)["original_truncated"] is False


# ----------------------------------------------------------------------- Avro --


def test_corrupt_avro_container() -> None:
    good = encode_container("engine_execution", [SEED])
    for value in (good[:-5], AVRO_MAGIC, AVRO_MAGIC + b"garbage", good[:40]):
        dl = only_dead(route(value))
        assert dl.reason == DECODE_ERROR
        assert dl.original == value


def test_avro_content_type_with_json_body_is_decode_error() -> None:
    value = orjson.dumps(SEED)
    dl = only_dead(route(value, headers=[("content-type", b"application/avro")]))
    assert dl.reason == DECODE_ERROR
    assert dl.original == value


def test_empty_avro_container() -> None:
    dl = only_dead(route(encode_container("engine_execution", [])))
    assert dl.reason == NOT_AN_OBJECT


def test_avro_container_of_an_output_type() -> None:
    doc = load(EXAMPLES_DIR / "window_stats" / "valid" / "required_only.json")
    dl = only_dead(route(encode_container("window_stats", [doc])))
    assert dl.reason == UNKNOWN_EVENT_TYPE


def test_avro_batch_with_schema_violation() -> None:
    bad = copy.deepcopy(SEED)
    bad["metrics"]["latency_ms"] = -5  # a long to Avro, below the JSON Schema minimum
    out = route(encode_container("engine_execution", [SEED, bad, SEED]))
    assert [e.doc for e in out.events] == [SEED, SEED]
    dl = only_dead(Routing(dead_letters=out.dead_letters))
    assert (dl.reason, dl.batch_index) == (SCHEMA_VIOLATION, 1)
    assert orjson.loads(dl.original)["metrics"]["latency_ms"] == -5


# ---------------------------------------------------------- confidentiality --


def _assert_secret_absent(dl: DeadLetter) -> None:
    record = dl.to_record(NOW)
    assert SECRET.encode() not in orjson.dumps(record)
    assert SECRET.encode() not in base64.b64decode(record["original"])
    assert SECRET not in dl.message


@pytest.mark.parametrize(
    ("extra", "removed"),
    [
        ({"prompt": SECRET}, ["prompt"]),
        ({"messages": [{"role": "user", "content": SECRET}]}, ["messages"]),
        (
            {"completion": SECRET, "prompt": SECRET, "text": [SECRET]},
            ["completion", "prompt", "text"],
        ),
        ({"response": {"body": SECRET}}, ["response"]),
    ],
)
@pytest.mark.parametrize("shape", ["single", "batch", "raw_topic", "field"])
def test_lifecycle_content_is_never_stored(
    extra: dict[str, Any], removed: list[str], shape: str
) -> None:
    doc = {**REQUEST_SERVED, **extra}
    if shape == "single":
        out = route(orjson.dumps(doc), headers=header("engine_event"))
    elif shape == "batch":
        out = route(orjson.dumps([REQUEST_SERVED, doc]), headers=header("engine_event"))
    elif shape == "raw_topic":
        out = route(orjson.dumps(doc), topic=NAMES.raw["engine_event"])
    else:
        out = route(orjson.dumps({**doc, "event_type": "engine_event"}))
    assert len(out.dead_letters) == 1
    dl = out.dead_letters[0]
    assert dl.reason == CONFIDENTIALITY
    assert dl.removed_fields == removed
    assert dl.to_record(NOW)["removed_fields"] == removed
    assert dl.event_type == "engine_event"
    assert orjson.loads(dl.original) == REQUEST_SERVED
    _assert_secret_absent(dl)
    assert [e.doc for e in out.events] == ([REQUEST_SERVED] if shape == "batch" else [])


@pytest.mark.parametrize("variant", ["ModelLoaded", "EngineError", "Unknown", None])
def test_lifecycle_content_refused_on_every_variant(variant: str | None) -> None:
    doc = dict(REQUEST_SERVED, event=variant, prompt=SECRET)
    if variant is None:
        del doc["event"]
    dl = only_dead(route(orjson.dumps(doc), headers=header("engine_event")))
    assert dl.reason == CONFIDENTIALITY
    assert "prompt" in dl.removed_fields
    _assert_secret_absent(dl)


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("status_code", SECRET, "type"),
        ("latency_ms", SECRET, "type"),
        ("route", [SECRET], "type"),
        ("model", {"text": SECRET}, "type"),
        ("provider", SECRET * 20, "maxLength"),
        ("event", SECRET, "enum"),
        ("engine_id", 7, "type"),
    ],
)
def test_lifecycle_violation_does_not_quote_values(field: str, value: Any, rule: str) -> None:
    doc = {**REQUEST_SERVED, field: value}
    dl = only_dead(route(orjson.dumps(doc), headers=header("engine_event")))
    assert dl.reason == SCHEMA_VIOLATION
    assert dl.violation is not None
    assert dl.violation.rule == rule
    if field != "event":
        assert dl.violation.path == f"/{field}"
    shown = dl.to_record(NOW)["error"]
    assert SECRET not in dl.message
    assert SECRET not in orjson.dumps(shown).decode()
    assert str(value) not in dl.message


@pytest.mark.parametrize(
    ("extra", "removed"),
    [({"": SECRET}, []), ({"": SECRET, "prompt": SECRET}, ["prompt"])],
)
def test_lifecycle_field_with_empty_name(extra: dict[str, Any], removed: list[str]) -> None:
    """A field named '' is removed too; dead_letter.json cannot name it in removed_fields."""
    dl = only_dead(route(orjson.dumps({**REQUEST_SERVED, **extra}), headers=header("engine_event")))
    assert dl.reason == CONFIDENTIALITY
    assert dl.removed_fields == removed
    assert '""' in dl.message
    assert orjson.loads(dl.original) == REQUEST_SERVED
    _assert_secret_absent(dl)


# ------------------------------------------------------------------ records --


def test_dead_letter_ids_and_timestamps() -> None:
    whole = only_dead(route(b"{", offset=0, timestamp_ms=None))
    assert whole.id == f"{NAMES.ingest}/3/0/-"
    assert whole.to_record(NOW)["source"]["message_timestamp_ms"] is None
    out = route(orjson.dumps([SEED, 1, 2]), headers=header("engine_execution"), offset=17)
    assert [d.id for d in out.dead_letters] == [f"{NAMES.ingest}/3/17/1", f"{NAMES.ingest}/3/17/2"]


def test_prefixed_topic_names_route_the_same() -> None:
    names = TopicNames("t0123456789.")
    router = Router(names, REGISTRY)
    out = route(orjson.dumps(SEED), topic=names.raw["engine_execution"], router=router)
    assert [e.event_type for e in out.events] == ["engine_execution"]
    dl = only_dead(route(b"[]", topic=names.ingest, router=router))
    assert dl.id.startswith("t0123456789.engine.ingest/")


# -------------------------------------------------------------- properties --

EVENT_TYPE_VALUES = [t.encode() for t in ROUTABLE] + [b"window_stats", b"", b"\xff"]
header_names = st.sampled_from(["event-type", "EVENT-TYPE", "content-type", "x-trace"]) | st.text(
    max_size=12
)
header_values = st.sampled_from(
    [*EVENT_TYPE_VALUES, b"application/avro", b"avro/binary"]
) | st.binary(max_size=24)
headers_strategy = st.lists(st.tuples(header_names, header_values), max_size=4)

AVRO_SAMPLES = [encode_container(t, docs) for t, docs in VALID_DOCS.items()]
# valid events, half of them naming their type (so they route whatever the header says)
TYPED_DOCS = [
    doc for t, docs in VALID_DOCS.items() for d in docs for doc in (d, {**d, "event_type": t})
]
JSON_SAMPLES = [orjson.dumps(d) for d in TYPED_DOCS]


@st.composite
def damaged(draw: st.DrawFn, samples: list[bytes]) -> bytes:
    """A real message with a few bytes replaced, or cut short."""
    data = bytearray(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(0, 3))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
# arbitrary JSON, with valid events among the leaves so that routing happens too
json_with_events = st.recursive(
    json_scalars | st.sampled_from(TYPED_DOCS),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)

raw_values = (
    st.none()
    | st.binary(max_size=300)
    | st.builds(lambda b: AVRO_MAGIC + b, st.binary(max_size=200))
    | damaged(AVRO_SAMPLES)
    | damaged(JSON_SAMPLES)
    | json_with_events.map(orjson.dumps)
    | st.sampled_from(AVRO_SAMPLES + JSON_SAMPLES)
)


def outcome(out: Routing) -> str:
    """A label for hypothesis statistics: which outcomes a message had."""
    return "+".join(sorted({"routed" for _ in out.events} | {d.reason for d in out.dead_letters}))


PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def expected_outcomes(value: bytes | None) -> int | None:
    """How many outcomes a message must have (None when it cannot be told from the bytes)."""
    data = value or b""
    if data[:4] == AVRO_MAGIC:
        return None  # one per decoded record, or one dead letter
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return 1
    if isinstance(parsed, list) and parsed:
        return len(parsed)
    return 1


@PROPERTY_SETTINGS
@given(value=raw_values, headers=headers_strategy, topic=st.sampled_from(NAMES.inputs()))
def test_arbitrary_bytes_never_raise(
    value: bytes | None, headers: list[tuple[str, bytes]], topic: str
) -> None:
    out = route(value, headers=headers, topic=topic)
    label(outcome(out))
    total = len(out.events) + len(out.dead_letters)
    assert total >= 1
    if any(d.batch_index is None for d in out.dead_letters):
        # a dead letter for the whole message is its only outcome
        assert total == 1
    else:
        indexes = [d.batch_index for d in out.dead_letters]
        assert len(set(indexes)) == len(indexes)
    expected = expected_outcomes(value)
    content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
    if expected is not None and content_type not in (b"application/avro", b"avro/binary"):
        assert total == expected


@PROPERTY_SETTINGS
@given(
    value=json_with_events
    | json_values
    | st.lists(st.sampled_from(TYPED_DOCS) | json_with_events, min_size=1, max_size=6),
    event_type=st.sampled_from(ROUTABLE),
)
def test_arbitrary_json_never_raises(value: Any, event_type: str) -> None:
    data = orjson.dumps(value)
    out = route(data, headers=header(event_type))
    label(outcome(out))
    total = len(out.events) + len(out.dead_letters)
    if isinstance(value, list) and value:
        assert total == len(value)
        indexes = [d.batch_index for d in out.dead_letters]
        assert all(i is not None and 0 <= i < len(value) for i in indexes)
        assert len(set(indexes)) == len(indexes)
        kept = [i for i in range(len(value)) if i not in set(indexes)]
        assert [e.doc for e in out.events] == [
            strip_type(orjson.loads(orjson.dumps(value[i]))) for i in kept
        ]
    elif isinstance(value, dict):
        assert total == 1
        if out.dead_letters:
            assert out.dead_letters[0].batch_index is None
    else:
        dl = only_dead(out)
        assert dl.reason in (NOT_AN_OBJECT, MALFORMED_JSON)
        assert dl.original == data


def property_names(node: Any) -> set[str]:
    """Every property name a schema (or any schema inside it) declares."""
    names: set[str] = set()
    if isinstance(node, dict):
        names |= set(node.get("properties", {}))
        for value in node.values():
            names |= property_names(value)
    elif isinstance(node, list):
        for value in node:
            names |= property_names(value)
    return names


# Field names worth adding: every property any schema names, the envelope field, content.
FIELD_NAMES = sorted(
    set().union(*(property_names(s) for s in SCHEMAS.values()))
    | {"event_type", "prompt", "messages", "completion"}
)
INTERESTING: st.SearchStrategy[Any] = st.sampled_from(
    [
        *ROUTABLE,
        "RequestServed",
        "ModelLoaded",
        "submit",
        "session_started",
        "gold",
        "x" * 300,
        "0123456789abcdef0123456789abcdef",
        "",
        0,
        -1,
        100,
        101,
        599,
        600,
        65536,
        0.5,
        1.0,
        1.5,
        True,
        False,
        None,
        [],
        {},
    ]
)


def swapped(value: Any) -> st.SearchStrategy[Any]:
    """Values of a neighbouring type (or the same value in another type) for `value`."""
    if isinstance(value, bool):
        return st.sampled_from([int(value), float(value), str(value).lower(), None, [value]])
    if isinstance(value, int):
        return st.sampled_from([float(value), value + 0.5, value != 0, str(value), -1])
    if isinstance(value, float):
        whole = int(value) if math.isfinite(value) and abs(value) < 2**63 else 0
        return st.sampled_from([whole, value > 0, str(value), -value, value * 1e6])
    if isinstance(value, str):
        return st.sampled_from(
            [len(value), value != "", "", value.upper(), value + "x" * 300, [value]]
        )
    if isinstance(value, list):
        return st.sampled_from([[], value[:1], value * 2, {}, None])
    if isinstance(value, dict):
        return st.sampled_from([[], [value], {}, "{}", None])
    return st.sampled_from([0, "", False, [], {}])


def dict_nodes(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found += dict_nodes(value)
    elif isinstance(node, list):
        for value in node:
            found += dict_nodes(value)
    return found


VALID_DOCS_BY_TYPE = {
    **VALID_DOCS,
    **{t: [load(p) for p in example_paths(t, "valid")] for t in ("dead_letter", "window_stats")},
}


@st.composite
def mutated(draw: st.DrawFn, types: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """A valid example of one of `types` with up to three fields dropped, replaced or added."""
    event_type = draw(st.sampled_from(list(types)))
    doc = copy.deepcopy(draw(st.sampled_from(VALID_DOCS_BY_TYPE[event_type])))
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(dict_nodes(doc)))
        op = draw(st.sampled_from(["drop", "replace", "swap", "add"]))
        if op != "add" and target:
            key = draw(st.sampled_from(sorted(target)))
            if op == "drop":
                del target[key]
            elif op == "replace":
                target[key] = copy.deepcopy(draw(json_values | INTERESTING))
            else:
                target[key] = copy.deepcopy(draw(swapped(target[key])))
        else:
            key = draw(st.sampled_from(FIELD_NAMES) | st.text(max_size=12))
            target[key] = copy.deepcopy(draw(json_values | INTERESTING))
    # what the router sees: JSON has no infinity (orjson writes null)
    return event_type, orjson.loads(orjson.dumps(doc))


@PROPERTY_SETTINGS
@given(event=mutated(ROUTABLE), on=st.sampled_from(["ingest", "raw_topic"]), batch=st.booleans())
def test_mutated_event_verdict_matches_jsonschema(
    event: tuple[str, dict[str, Any]], on: str, batch: bool
) -> None:
    event_type, doc = event
    value = orjson.dumps([doc] if batch else doc)
    if on == "ingest":
        out = route(value, headers=header(event_type))
    else:
        out = route(value, topic=NAMES.raw[event_type])
    assert len(out.events) + len(out.dead_letters) == 1
    label(outcome(out))
    for dl in out.dead_letters:
        assert dl.batch_index == (0 if batch else None)
        if dl.event_type != "engine_event":  # lifecycle dead letters store the parsed event
            assert orjson.loads(dl.original) == doc
    named = doc.get("event_type")
    stripped = strip_type(doc)
    if on == "raw_topic" and named is not None and named != event_type:
        dl = only_dead(out)
        assert (dl.reason, dl.event_type) == (SCHEMA_VIOLATION, event_type)
        return
    effective = event_type if named is None else named
    if not isinstance(effective, str) or effective not in EVENT_ROUTES:
        assert only_dead(out).reason == UNKNOWN_EVENT_TYPE
        return
    extras = lifecycle_extras(stripped) if effective == "engine_event" else []
    if extras:
        dl = only_dead(out)
        assert dl.reason == CONFIDENTIALITY
        assert dl.removed_fields == [k for k in extras if k]
        assert orjson.loads(dl.original) == {k: v for k, v in stripped.items() if k not in extras}
        assert not VALIDATORS[effective].is_valid(stripped)
        return
    best = best_match(VALIDATORS[effective].iter_errors(stripped))
    if best is None:
        assert out.dead_letters == []
        assert [(e.event_type, e.doc) for e in out.events] == [(effective, stripped)]
    else:
        dl = only_dead(out)
        assert dl.reason == SCHEMA_VIOLATION
        assert dl.event_type == effective
        assert dl.violation is not None
        assert (dl.violation.rule, dl.violation.path) == (best.validator, pointer(best))
        if effective == "engine_event":  # confidential: no value is quoted
            for value in stripped.values():
                assert not (isinstance(value, str) and len(value) >= 8 and value in dl.message)
