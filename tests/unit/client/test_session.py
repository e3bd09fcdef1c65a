"""SessionRecorder (streams.client.session) publishes a valid session and
summarises it locally."""

from __future__ import annotations

import pytest

from streams.client import SESSION_EVENT, InMemorySink, InvalidEvent, SessionRecorder
from tests.unit.client.support import HARDWARE, REGISTRY


def test_session_recorder_publishes_a_valid_session_and_summarises_it() -> None:
    sink = InMemorySink()
    clock = iter(range(1_000, 2_000))
    recorder = SessionRecorder(sink, "device-123", platform="android", clock=lambda: next(clock))
    recorder.record_inference("wav2vec2", "1.0", 10)  # no session yet: nothing happens
    assert len(sink) == 0 and recorder.summary() is None and not recorder.active

    session_id = recorder.start(hardware=HARDWARE)
    assert recorder.active and recorder.session_id == session_id
    recorder.record_inference("wav2vec2", "1.0", 250)
    recorder.record_inference("wav2vec2", "1.0", 350)
    recorder.record_inference("whisper", "2", 100.5)
    recorder.record_error("Network connection failed", model_id="wav2vec2")
    recorder.record_error("Network connection failed", model_id="wav2vec2")
    recorder.record_error("Model not found")
    with pytest.raises(InvalidEvent):  # refused: the summary does not change
        recorder.record_inference("wav2vec2", "1.0", -5)
    summary = recorder.end()

    assert summary is not None and not summary.active and not recorder.active
    assert summary.session_id == session_id and summary.device_id == "device-123"
    assert summary.total_inferences == 3 and summary.total_latency_ms == 700.5
    assert summary.avg_latency_ms == pytest.approx(233.5)
    assert summary.models_used == ("wav2vec2", "whisper")
    usage = summary.by_model["wav2vec2@1.0"]
    assert (usage.calls, usage.total_latency_ms, usage.avg_latency_ms, usage.errors) == (
        2,
        600,
        300,
        2,
    )
    assert summary.error_count == 3
    assert summary.errors == {"Network connection failed": 2, "Model not found": 1}
    assert recorder.end() is None

    published = sink.events(SESSION_EVENT)
    assert [d["event"] for d in published] == [
        "session_started",
        *["inference_recorded"] * 3,
        *["error_recorded"] * 3,
        "session_ended",
    ]
    assert {d["session_id"] for d in published} == {session_id}
    assert published[0]["hardware"] == HARDWARE and published[0]["device_id"] == "device-123"
    assert all(REGISTRY.check(SESSION_EVENT, d) is None for d in published)
    assert published[-1]["timestamp"] == summary.ended_at

    # Starting again while active ends the running session first.
    first = recorder.start()
    second = recorder.start()
    kinds = [(d["event"], d["session_id"]) for d in sink.events(SESSION_EVENT)[-3:]]
    assert kinds == [
        ("session_started", first),
        ("session_ended", first),
        ("session_started", second),
    ]
