"""Device sessions from session events, and the timer that ends idle sessions."""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from streams.agents.keyed_state import (
    DeadLetterFactory,
    KeyedState,
    fold,
    register_keyed_agent,
)
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.sessions import Session

log = logging.getLogger(__name__)

IDLE_CHECK_S = 5.0


def apply_session_event(
    state: KeyedState, event: dict[str, Any], letters: DeadLetterFactory
) -> None:
    """Fold one session_event into its session record."""
    session_id = str(event["session_id"])
    fold(state, letters, session_id, event, Session.from_event, Session.from_json, "session")


def register_sessions(
    app: faust.App,
    settings: Settings,
    names: TopicNames,
    partitions: dict[str, int],
    idle_timeout_s: float,
) -> KeyedState:
    """Add the sessions table, its agent, and the idle-session timer."""
    state = KeyedState(app, settings, "sessions", names.typed["session_event"])
    register_keyed_agent(
        app, settings, names, state, "session_event", apply_session_event, partitions
    )
    timeout_ms = int(idle_timeout_s * 1000)

    @app.timer(IDLE_CHECK_S)
    async def end_idle_sessions() -> None:
        if app.rebalancing:
            return
        now_ms = int(time.time() * 1000)
        async with state.lock:
            for record in state.records():
                try:
                    session = Session.from_json(record)
                except ValueError as exc:  # a bad record must not stop the worker
                    log.warning("session %s not checked for idling: %s",
                                record.get("session_id"), exc)
                    continue
                if session.idle_expire(now_ms, timeout_ms):
                    state.put(session.session_id, session.to_json())
            await state.save()

    return state
