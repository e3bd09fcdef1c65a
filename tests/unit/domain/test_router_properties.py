"""Property tests of the router: arbitrary bytes, arbitrary JSON and mutated valid events,
each compared with an independent oracle; the router never raises."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import event as label
from hypothesis import strategies as st
from jsonschema.exceptions import best_match

from streams.config.topics import EVENT_ROUTES
from streams.domain.avro_codec import AVRO_MAGIC, encode_container
from streams.domain.router import (
    CONFIDENTIALITY,
    MALFORMED_JSON,
    NOT_AN_OBJECT,
    SCHEMA_VIOLATION,
    UNKNOWN_EVENT_TYPE,
    Routing,
)
from tests.unit.domain import schema_strategies as strategies
from tests.unit.domain.router_cases import (
    NAMES,
    ROUTABLE,
    SCHEMAS,
    VALID_DOCS,
    VALIDATORS,
    example_paths,
    header,
    lifecycle_extras,
    load,
    only_dead,
    pointer,
    route,
    strip_type,
)
from tests.unit.domain.schema_files import property_names

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


json_values = strategies.json_values(max_size=5, max_leaves=20)
# arbitrary JSON, with valid events among the leaves so that routing happens too
json_with_events = strategies.json_values(
    max_size=5, max_leaves=20, leaves=strategies.json_scalars | st.sampled_from(TYPED_DOCS)
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
