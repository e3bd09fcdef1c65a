"""Engine status from lifecycle events: engine_id -> state, model, port, last error."""

from __future__ import annotations

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
from streams.domain.engine_status import EngineStatus


def apply_lifecycle(state: KeyedState, event: dict[str, Any], letters: DeadLetterFactory) -> None:
    """Fold one engine_event into its engine's status."""
    engine_id = str(event["engine_id"])
    fold(
        state, letters, engine_id, event,
        EngineStatus.from_event, EngineStatus.from_json, "engine status",
    )


def register_engine_status(
    app: faust.App, settings: Settings, names: TopicNames, partitions: dict[str, int]
) -> KeyedState:
    """Add the engine status table and its agent."""
    state = KeyedState(app, settings, "engine-status", names.typed["engine_event"])
    register_keyed_agent(
        app, settings, names, state, "engine_event", apply_lifecycle, partitions
    )
    return state
