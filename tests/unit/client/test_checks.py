"""The checks every sink makes (streams.client.checks): the confidentiality refusal
names fields and never their values, with validation on or off and through every
sink; schema errors raise InvalidEvent without quoting values."""

from __future__ import annotations

import pytest

from streams.client import (
    ENGINE_EVENT,
    ENGINE_EXECUTION,
    ConfidentialityError,
    EventPublisher,
    InMemorySink,
    InvalidEvent,
    NoopSink,
    Publisher,
    events,
)
from tests.unit.client.support import CASES, SECRET, request_served, unreachable


def sinks_under_test(validate: bool) -> list[EventPublisher]:
    return [
        Publisher(**unreachable(validate=validate)),
        InMemorySink(validate=validate),
        NoopSink(validate=validate),
    ]


@pytest.mark.parametrize("validate", [True, False])
def test_lifecycle_event_with_content_is_refused_naming_fields_not_values(
    validate: bool,
) -> None:
    for sink in sinks_under_test(validate):
        doc = request_served(prompt=SECRET, completion=f"the answer is {SECRET}")
        with pytest.raises(ConfidentialityError) as info:
            sink.publish(ENGINE_EVENT, doc)
        error = info.value
        assert isinstance(error, InvalidEvent) and isinstance(error, ValueError)
        assert error.fields == ("completion", "prompt")
        assert "completion" in str(error) and "prompt" in str(error)
        assert SECRET not in str(error) and SECRET not in repr(error)
        # An unknown variant is not echoed either (it could be anything).
        with pytest.raises(ConfidentialityError) as info:
            sink.publish(
                ENGINE_EVENT,
                {"event": SECRET, "engine_id": "e", "timestamp": 1, "messages": [SECRET]},
            )
        assert info.value.fields == ("messages",) and SECRET not in str(info.value)
    # Every variant's own fields are fine; one more field is not.
    for _, event_type, doc in CASES:
        if event_type == ENGINE_EVENT:
            InMemorySink().publish(event_type, doc)
            with pytest.raises(ConfidentialityError):
                NoopSink(validate=False).publish(event_type, {**doc, "messages": []})


def test_confidentiality_refusals_raise_even_when_invalid_events_are_dropped() -> None:
    publisher = Publisher(**unreachable(on_invalid="drop"))
    with pytest.raises(ConfidentialityError):
        publisher.publish(ENGINE_EVENT, request_served(prompt=SECRET))
    assert publisher.stats.dropped["invalid"] == 1 and publisher.stats.buffered == 0


def test_schema_errors_raise_invalid_event_without_quoting_values() -> None:
    sink = InMemorySink()
    with pytest.raises(InvalidEvent) as info:
        sink.publish(ENGINE_EVENT, request_served(status_code=SECRET))
    error = info.value
    assert not isinstance(error, ConfidentialityError)
    assert error.violation is not None and error.violation.path == "/status_code"
    assert "'type'" in str(error) and "/status_code" in str(error)
    assert SECRET not in str(error)
    # Rules whose message names fields keep jsonschema's message.
    missing = request_served()
    del missing["model"]
    with pytest.raises(InvalidEvent, match="'model' is a required property"):
        sink.publish(ENGINE_EVENT, missing)
    run = events.execution("gpt-x", "a", "b", latency_ms=1)
    with pytest.raises(InvalidEvent, match="'prompt' was unexpected"):
        sink.publish(ENGINE_EXECUTION, {**run, "prompt": SECRET})
    with pytest.raises(InvalidEvent, match="unknown event type"):
        sink.publish("engine_telemetry", run)
    with pytest.raises(InvalidEvent, match="JSON object"):
        sink.publish(ENGINE_EXECUTION, [run])  # type: ignore[arg-type]
    assert len(sink) == 0
    # Validation off: off-schema events pass (the router dead-letters them).
    loose = InMemorySink(validate=False)
    assert loose.publish(ENGINE_EVENT, request_served(status_code=SECRET))
    assert len(loose) == 1
