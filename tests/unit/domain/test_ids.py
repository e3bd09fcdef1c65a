"""Every id the product derives is injective: different events or windows, different ids,
whatever characters their fields hold."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.config.channels import content_id, window_id
from streams.domain.dead_letters import DeadLetter, Inbound
from streams.domain.tiering import sample_id_for
from streams.domain.windows import decode_key, encode_key

ANY_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
                   max_size=8)  # fmt: skip
SEPARATORS = st.text(alphabet="/@\\\"[],:a", max_size=6)  # what naive joins confuse
FIELD = ANY_TEXT | SEPARATORS
TOPIC = st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True)
AGENT = st.none() | st.sampled_from(["windows", "training", "sink.events", "jobs"])


def window(kind: str, engine: str, model: str, route: str, size: int, start: int,
           revision: int) -> dict[str, Any]:  # fmt: skip
    return {"kind": kind, "engine_id": engine, "model": model, "route": route,
            "window_size_s": size, "window_start": start, "revision": revision}  # fmt: skip


WINDOW_FIELDS = st.tuples(st.sampled_from(["engine", "route"]), FIELD, FIELD, FIELD,
                          st.integers(1, 3600), st.integers(0, 10**10), st.integers(0, 5))


@settings(max_examples=300)
@given(WINDOW_FIELDS, WINDOW_FIELDS)
def test_window_ids_differ_when_windows_differ(a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
    assert (window_id(window(*a)) == window_id(window(*b))) == (a == b)
    key_a, key_b = a[:6], b[:6]
    assert (encode_key(key_a) == encode_key(key_b)) == (key_a == key_b)
    assert decode_key(encode_key(key_a)) == key_a


def test_window_ids_of_fields_that_a_join_would_merge() -> None:
    assert window_id(window("engine", "a/b", "", "", 60, 0, 0)) != window_id(
        window("engine", "a", "b", "", 60, 0, 0)
    )


DEAD_LETTER_PLACE = st.tuples(AGENT, TOPIC, st.integers(0, 50), st.integers(0, 10**6),
                              st.none() | st.integers(0, 500))  # fmt: skip


@settings(max_examples=300)
@given(DEAD_LETTER_PLACE, DEAD_LETTER_PLACE)
def test_dead_letter_ids_differ_when_agent_or_place_differs(
    a: tuple[Any, ...], b: tuple[Any, ...]
) -> None:
    def letter(agent: str | None, topic: str, partition: int, offset: int,
               index: int | None) -> DeadLetter:  # fmt: skip
        return DeadLetter("processing_error", "", Inbound(topic, partition, offset, None), b"",
                          batch_index=index, agent=agent)  # fmt: skip

    assert (letter(*a).id == letter(*b).id) == (a == b)


JSON = st.recursive(
    st.none() | st.integers(-(2**63), 2**63 - 1) | FIELD,  # (True == 1 in Python)
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(FIELD, inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300)
@given(st.dictionaries(FIELD, JSON, max_size=4), st.dictionaries(FIELD, JSON, max_size=4))
def test_execution_ids_differ_exactly_when_the_executions_do(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    assert (content_id(a) == content_id(b)) == (a == b)
    assert content_id(dict(reversed(list(a.items())))) == content_id(a)  # key order


@given(FIELD, FIELD)
def test_sample_ids_differ_when_comparisons_do(a: str, b: str) -> None:
    assert (sample_id_for(a) == sample_id_for(b)) == (a == b)


def test_a_canonical_channel_identifies_a_line_by_its_hash() -> None:
    """A canonical channel's sink hashes the line it writes instead of encoding the
    record twice: that is only right while its record id is content_id."""
    import hashlib

    from streams.config.channels import CHANNELS, canonical_json

    canonical = [c for c in CHANNELS if c.canonical]
    assert [c.name for c in canonical] == ["events"]
    record = {"z": 1, "a": {"y": [1, 2], "b": "é"}, "m": None}
    for channel in canonical:
        assert channel.record_id is content_id
        assert hashlib.sha256(canonical_json(record)).digest() == content_id(record)
