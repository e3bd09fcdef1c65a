"""Faust web views (JSON): health and readiness (with the address this worker advertises
to its peers), and the router's running counts."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import faust
from faust.web import Request, Response, View

from streams.runtime.assignment_gaps import AssignmentGaps
from streams.runtime.router_counters import RouterCounters


def readiness(app: faust.App, unassigned: Collection[str] = ()) -> dict[str, Any]:
    """Whether this worker has partitions assigned, its tables recovered, and no topic
    left out of the group's assignment (`unassigned`, streams.runtime.assignment_gaps)."""
    try:
        assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
    except Exception:  # the consumer is not started yet
        assigned = []
    recovery = getattr(app.tables, "recovery", None)
    recovered = recovery.completed.is_set() if recovery is not None else True
    ready = bool(assigned) and not app.rebalancing and recovered and not unassigned
    return {
        "ready": ready,
        "rebalancing": app.rebalancing,
        "assigned": assigned,
        "unassigned_topics": sorted(unassigned),
    }


def recovering(app: faust.App) -> bool:
    """True while partitions move or tables recover: views then answer 503."""
    recovery = getattr(app.tables, "recovery", None)
    return bool(app.rebalancing or (recovery is not None and not recovery.completed.is_set()))


def unavailable(
    view: View, why: str = "state is being recovered; retry shortly", retry_after_s: int = 2
) -> Response:
    """503 with Retry-After, rather than an answer from state still being recovered
    (or without the part of a worker that did not answer: `why` names it)."""
    response = view.json({"error": why}, status=503)
    response.headers["Retry-After"] = str(retry_after_s)
    return response


StatsSource = Callable[[], dict[str, Any]]


def register_web(
    app: faust.App,
    counters: RouterCounters,
    sources: dict[str, StatsSource] | None = None,
    gaps: AssignmentGaps | None = None,
) -> None:
    """Add the views to `app`; /stats shows the router's counts and each of `sources`
    (this worker's own counts since it started); /health is not ready while `gaps`
    names topics left out of the group's assignment."""
    extra = sources or {}

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            state = readiness(app, gaps.topics if gaps is not None else ())
            # The address the other workers forward to and gather from: a wrong one
            # shows here before it shows as 503s.
            body = {"status": "ok", **state, "advertised_url": str(app.conf.canonical_url)}
            return self.json(body, status=200 if state["ready"] else 503)

    @app.page("/stats")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            return self.json(
                {"router": counters.snapshot(), **{name: get() for name, get in extra.items()}}
            )
