"""The router's limits: inputs that once stopped a worker are now dead letters.

Each class of the inputs that made a worker exit (nesting, size after
decompression, numbers out of range, event time from the future) is routed here
next to valid events: the input becomes exactly one dead letter with its reason,
and the events around it are routed as usual. Pure logic, no broker.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import fastavro
import orjson
import pytest

from streams.config.topics import TopicNames
from streams.domain.avro_codec import (
    MAX_CONTAINER_EVENTS,
    _write_long,
    encode_container,
    load_avro_schemas,
)
from streams.domain.dead_letters import FUTURE_TIMESTAMP, PROCESSING_ERROR, TOO_DEEP
from streams.domain.router import (
    DECODE_ERROR,
    OVERSIZED,
    SCHEMA_VIOLATION,
    Inbound,
    Router,
    Routing,
)
from streams.domain.validation import SchemaRegistry
from tests.unit.domain.router_cases import REQUEST_SERVED, SEED, check_dead_letter

NAMES = TopicNames()
REGISTRY = SchemaRegistry()
NOW = 1_764_000_000.0  # what the router takes as the wall clock in these tests
EXECUTION = {"event-type": b"engine_execution"}


def route(value: bytes, router: Router | None = None, headers: dict[str, bytes] | None = None,
          now: float = NOW) -> Routing:
    router = router or Router(NAMES, REGISTRY)
    msg = Inbound(NAMES.ingest, 1, 77, value, tuple((headers or EXECUTION).items()), None)
    out = router.route(msg, now=now)
    for letter in out.dead_letters:
        record = letter.to_record(now)
        assert REGISTRY.check("dead_letter", record) is None, record
    return out


def nested(depth: int, leaf: Any = 1) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def nested_json(depth: int) -> bytes:
    """`nested(depth)` as JSON text (orjson encodes 255 levels at most)."""
    return b"[" * depth + b"1" + b"]" * depth


def with_raw(doc: dict[str, Any], field: str, raw: bytes) -> bytes:
    """`doc` as JSON, with the value of top-level `field` replaced by `raw` JSON text."""
    marker = "\x00MARK\x00"
    return orjson.dumps({**doc, field: marker}).replace(orjson.dumps(marker), raw)


def seed(**changes: Any) -> dict[str, Any]:
    doc = dict(SEED, trace_id=f"t-{len(changes)}")
    metrics = dict(doc["metrics"])
    for key, value in changes.items():
        if key in metrics or key in ("memory_mb", "cpu_percent", "quality_score"):
            metrics[key] = value
        else:
            doc[key] = value
    doc["metrics"] = metrics
    return doc


def batch_around(bad: Any) -> bytes:
    """A batch of three: a valid event, `bad` (a document, or JSON text), a valid event."""
    middle = bad if isinstance(bad, bytes) else orjson.dumps(bad)
    before, after = orjson.dumps(seed(task_id="before")), orjson.dumps(seed(task_id="after"))
    return b"[" + before + b"," + middle + b"," + after + b"]"


def only_one_refused(out: Routing, reason: str, index: int | None = 1) -> dict[str, Any]:
    assert [letter.reason for letter in out.dead_letters] == [reason]
    letter = out.dead_letters[0]
    assert letter.batch_index == index
    if index is not None:
        assert [e.doc["task_id"] for e in out.events] == ["before", "after"]
    return check_dead_letter_loosely(letter.to_record(NOW))


def check_dead_letter_loosely(record: dict[str, Any]) -> dict[str, Any]:
    assert record["id"] == f"{NAMES.ingest}/1/77/{record['source']['batch_index'] or '-'}"
    return record


# ----------------------------------------------------------------- nesting --


def test_batch_element_nested_hundreds_of_levels_is_too_deep() -> None:
    element = nested(300)
    value = batch_around(nested_json(300))
    assert len(value) < 1024
    record = only_one_refused(route(value), TOO_DEEP)
    # The original is kept whole, though orjson cannot encode it (over 255 levels).
    assert orjson.loads(base64.b64decode(record["original"])) == element


def test_field_nested_hundreds_of_levels_in_a_single_event_is_too_deep() -> None:
    value = with_raw(seed(), "input", nested_json(400))
    out = route(value)
    assert out.events == []
    assert [letter.reason for letter in out.dead_letters] == [TOO_DEEP]
    assert out.dead_letters[0].original == value


def test_nesting_past_the_parsers_limit_is_too_deep_not_malformed() -> None:
    value = b"[" * 2000 + b"]" * 2000
    out = route(value)
    assert [letter.reason for letter in out.dead_letters] == [TOO_DEEP]


def test_depth_limit_is_a_setting_and_counts_levels() -> None:
    router = Router(NAMES, REGISTRY, max_depth=5)
    # The event is one level; an input of four nested lists makes five in all.
    at_limit = orjson.dumps(seed(input=nested(4, "x")))
    over = orjson.dumps(seed(input=nested(5, "x")))
    assert [d.reason for d in route(at_limit, router).dead_letters] == [SCHEMA_VIOLATION]
    assert [d.reason for d in route(over, router).dead_letters] == [TOO_DEEP]


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    doc = seed(input='[[[[{{{{"\\' * 100, output="]]]}}}" * 100)
    out = route(orjson.dumps(doc))
    assert out.dead_letters == []
    assert len(out.events) == 1


def test_avro_record_nested_without_end_is_too_deep() -> None:
    schema = {
        "type": "record",
        "name": "enginestream.v1.EngineExecution",
        "fields": [
            {"name": "input", "type": "string"},
            {"name": "next", "type": ["null", "enginestream.v1.EngineExecution"]},
        ],
    }
    doc: Any = None
    for _ in range(300):  # past orjson's 255 levels
        doc = {"input": "x", "next": doc}
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), [doc, {"input": "y", "next": None}])
    out = route(buf.getvalue(), headers={})
    assert [d.reason for d in out.dead_letters] == [TOO_DEEP, SCHEMA_VIOLATION]


# ----------------------------------------------------- size after decompression --


def avro_bomb(size: int, codec: str = "deflate") -> bytes:
    """A container whose one event holds `size` bytes of input: tiny compressed."""
    buf = io.BytesIO()
    event = dict(SEED, input="a" * size)
    fastavro.writer(buf, load_avro_schemas()["engine_execution"], [event], codec=codec)
    return buf.getvalue()


@pytest.mark.parametrize("codec", ["deflate", "bzip2", "xz"])
def test_compressed_container_expanding_past_the_limit_is_oversized(codec: str) -> None:
    value = avro_bomb(20_000_000, codec)
    assert len(value) < 200_000  # within the limit on the wire
    router = Router(NAMES, REGISTRY, max_message_bytes=1_000_000, dead_letter_keep_bytes=100)
    out = route(value, router, headers={})
    assert [d.reason for d in out.dead_letters] == [OVERSIZED]
    letter = out.dead_letters[0]
    assert "expands to more than" in letter.message
    assert letter.original == value[:100]
    assert letter.original_size == len(value)


def test_compressed_container_within_the_limit_routes() -> None:
    value = avro_bomb(10_000)
    assert len(route(value, headers={}).events) == 1


def test_container_of_too_many_empty_records_is_oversized() -> None:
    schema = fastavro.parse_schema(
        {"type": "record", "name": "enginestream.v1.EngineExecution", "fields": []}
    )
    buf = io.BytesIO()
    fastavro.writer(buf, schema, [{}] * (MAX_CONTAINER_EVENTS + 1))
    assert len(buf.getvalue()) < 1000
    out = route(buf.getvalue(), headers={})
    assert [d.reason for d in out.dead_letters] == [OVERSIZED]


def test_corrupt_deflate_block_is_a_decode_error() -> None:
    good = avro_bomb(1000)
    sync = good[-16:]  # the header ends with the sync marker every block repeats
    header = good[: good.index(sync) + 16]
    block = b"\xff" * 50
    value = header + _write_long(1) + _write_long(len(block)) + block + sync
    out = route(value, headers={})
    assert [d.reason for d in out.dead_letters] == [DECODE_ERROR]


# ----------------------------------------------------------- numbers in range --


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"timestamp": 1_700_000_000_000}, "/timestamp"),  # milliseconds for seconds
        ({"timestamp": 1e300}, "/timestamp"),
        ({"latency_ms": 1.7976931348623157e308}, "/metrics/latency_ms"),
        ({"latency_ms": 2e9}, "/metrics/latency_ms"),
        ({"memory_mb": 1e300}, "/metrics/memory_mb"),
        ({"cpu_percent": 1e300}, "/metrics/cpu_percent"),
    ],
)
def test_numbers_out_of_range_are_schema_violations_naming_the_field(
    changes: dict[str, Any], path: str
) -> None:
    record = only_one_refused(route(batch_around(seed(**changes))), SCHEMA_VIOLATION)
    assert record["error"]["path"] == path
    assert record["error"]["rule"] in ("maximum", "exclusiveMaximum")


def test_request_served_latency_near_the_float_maximum_is_refused() -> None:
    value = with_raw(REQUEST_SERVED, "latency_ms", b"1.7976931348623157e308")
    out = route(value, headers={"event-type": b"engine_event"})
    assert [d.reason for d in out.dead_letters] == [SCHEMA_VIOLATION]
    assert out.dead_letters[0].violation is not None
    assert out.dead_letters[0].violation.path == "/latency_ms"


def test_avro_nan_and_infinity_are_schema_violations() -> None:
    for value in (float("nan"), float("inf")):
        event = dict(SEED, metrics={"latency_ms": value, "success": True})
        out = route(encode_container("engine_execution", [event, SEED]), headers={})
        assert [d.reason for d in out.dead_letters] == [SCHEMA_VIOLATION]
        assert out.dead_letters[0].violation is not None
        assert out.dead_letters[0].violation.path == "/metrics/latency_ms"
        assert len(out.events) == 1


# ------------------------------------------------------------- future event time --


def test_event_time_past_the_skew_is_future_timestamp() -> None:
    router = Router(NAMES, REGISTRY, max_future_skew_s=300)
    ahead = seed(timestamp=NOW + 301)
    record = only_one_refused(route(batch_around(ahead), router), FUTURE_TIMESTAMP)
    assert record["error"]["path"] == "/timestamp"
    assert orjson.loads(base64.b64decode(record["original"])) == ahead


def test_event_time_within_the_skew_routes() -> None:
    router = Router(NAMES, REGISTRY, max_future_skew_s=300)
    out = route(orjson.dumps(seed(timestamp=NOW + 299)), router)
    assert out.dead_letters == [] and len(out.events) == 1


def test_future_rule_covers_every_event_type_with_an_event_time() -> None:
    router = Router(NAMES, REGISTRY, max_future_skew_s=10)
    late_seed = {**SEED, "timestamp": NOW + 60}
    sample = {
        "sample_id": "s-1", "created_at": NOW + 60, "source_trace_id": "t-1",
        "tier": "gold", "input": "q", "output": "a",
        "validation": {"quality_score": 0.95, "validated": True},
    }  # fmt: skip
    for event_type, doc in (("engine_execution", late_seed), ("training_sample", sample),
                            ("engine_event", {**REQUEST_SERVED, "timestamp": NOW + 60})):
        out = route(orjson.dumps(doc), router, headers={"event-type": event_type.encode()})
        assert [d.reason for d in out.dead_letters] == [FUTURE_TIMESTAMP], event_type


# ------------------------------------------------------------- processing errors --


class ExplodingRegistry(SchemaRegistry):
    """A registry whose check raises on one engine id: a bug no input should reach."""

    def check(self, event_type: str, doc: Any) -> Any:
        if isinstance(doc, dict) and doc.get("engine_id") == "boom":
            raise RuntimeError("validator broke")
        return super().check(event_type, doc)


def test_error_while_routing_one_event_refuses_that_event_alone() -> None:
    router = Router(NAMES, ExplodingRegistry())
    out = route(batch_around(seed(engine_id="boom")), router)
    record = only_one_refused(out, PROCESSING_ERROR)
    assert record["error"]["agent"] == "router"
    assert record["error"]["exception"] == "RuntimeError"
    assert "validator broke" in record["error"]["message"]


def test_error_outside_any_event_refuses_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    router = Router(NAMES, REGISTRY)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("decoder broke")

    monkeypatch.setattr("streams.domain.router.decode_container", broken)
    value = encode_container("engine_execution", [SEED])
    out = route(value, router, headers={})
    assert out.events == []
    assert [d.reason for d in out.dead_letters] == [PROCESSING_ERROR]
    assert out.dead_letters[0].batch_index is None
    assert out.dead_letters[0].original == value


def test_memory_errors_are_not_input_errors() -> None:
    class NoMemory(SchemaRegistry):
        def check(self, event_type: str, doc: Any) -> Any:
            raise MemoryError

    with pytest.raises(MemoryError):
        route(orjson.dumps(SEED), Router(NAMES, NoMemory()))


def test_dead_letter_records_of_new_reasons_validate() -> None:
    out = route(batch_around(nested_json(300)))
    check_dead_letter(out.dead_letters[0])


def test_a_processing_error_keeps_its_event_within_the_keep_limit() -> None:
    from streams.domain.dead_letters import processing_error

    where = Inbound(NAMES.ingest, 0, 9, None)
    deep = nested(400)  # deeper than orjson encodes: still kept
    letter = processing_error("windows", ValueError("x"), where, deep, keep_bytes=50)
    assert len(letter.original) == 50 and letter.original_size == 2 * 400 + 1
    assert letter.to_record(NOW)["original_truncated"] is True
    whole = processing_error("windows", ValueError("x"), where, b"abc", keep_bytes=50)
    assert whole.original == b"abc" and whole.original_size == 3
