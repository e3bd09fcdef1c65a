"""Router tests: every inbound message ends in exactly one place, and dead letters explain why.

Pure logic, no broker: `Router.route` gets one Kafka message at a time. Every routed event
must be valid against its JSON Schema and keyed by its entity id; every dead letter must be
a valid `dead_letter` document whose verdict agrees with jsonschema. Confidentiality and the
property tests have files of their own (test_router_confidentiality.py,
test_router_properties.py)."""

from __future__ import annotations

import base64
import copy
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
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
    Router,
    Routing,
)
from tests.unit.domain.router_cases import (
    NAMES,
    NOW,
    REGISTRY,
    ROUTABLE,
    SEED,
    VALID_DOCS,
    VALIDATORS,
    examples,
    header,
    ids,
    lifecycle_extras,
    load,
    only_dead,
    pointer,
    route,
    strip_type,
)
from tests.unit.domain.schema_files import EXAMPLES_DIR, drop_none

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
