"""GET /training/stats: comparisons decided, by outcome, over the whole group."""

from __future__ import annotations

from collections import Counter
from typing import Any

import faust
from faust.web import Request, Response, View

from streams.agents.training_agent import TrainingProcessor
from streams.web.health import recovering, unavailable
from streams.web.peers import PeerUnavailable, ask_peers


def register_training_views(app: faust.App, processor: TrainingProcessor) -> None:
    """Add /training/stats to `app` (`?local=1`: this worker's partitions only)."""

    @app.page("/training/stats")
    class TrainingStats(View):
        async def get(self, request: Request) -> Response:
            if recovering(app):
                return unavailable(self)
            counts: Counter[str] = processor.counts()
            if request.query.get("local") != "1":
                try:
                    for answer in await ask_peers(app, "/training/stats?local=1", request):
                        counts.update(answer["decisions"])
                except PeerUnavailable as exc:
                    return unavailable(self, str(exc))
            tiers = {t: counts.get(t, 0) for t in ("gold", "silver", "bronze")}
            body: dict[str, Any] = {
                "decisions": dict(counts),
                "samples_by_tier": tiers,
                "below_threshold": counts.get("below_threshold", 0),
            }
            return self.json(body)
