"""Assemble and run one worker: check the broker, create topics, wire agents and views."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import Counter

import faust

from streams.agents.engine_status_agent import register_engine_status
from streams.agents.jobs_agent import register_jobs
from streams.agents.router_agent import register_router
from streams.agents.sessions_agent import register_sessions
from streams.agents.sink_agent import register_sinks
from streams.agents.training_agent import register_training
from streams.agents.window_agent import register_windows
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.router import Router
from streams.domain.validation import default_registry
from streams.domain.windows import WindowConfig
from streams.kafka.admin import check_broker, ensure_topics, replication
from streams.runtime.app import create_app
from streams.runtime.assignment_gaps import complete_assignment
from streams.runtime.handoff import Handoff
from streams.runtime.logs import faust_logging_config, worker_name
from streams.runtime.router_counters import RouterCounters
from streams.runtime.versions import check_versions
from streams.web.auth import guard_reads
from streams.web.dashboard import register_dashboard
from streams.web.health import register_web
from streams.web.prometheus import register_prometheus
from streams.web.state_views import register_state_views
from streams.web.training_views import register_training_views
from streams.web.window_views import register_window_views

log = logging.getLogger(__name__)

# Full collections once per 1,000 middle ones instead of 10: a worker holds hundreds of
# thousands of long-lived objects (open windows, table state), and each full pass walks
# them all; refcounting frees almost everything else at once.
GC_THRESHOLDS = (700, 10, 1000)


def build_worker_app(settings: Settings, partitions: dict[str, int]) -> faust.App:
    """The app with every agent and view of a worker registered."""
    app = create_app(settings)
    names = TopicNames(settings.topic_prefix)
    router = Router(
        names,
        default_registry(),
        max_message_bytes=settings.max_message_bytes,
        dead_letter_keep_bytes=settings.dead_letter_keep_bytes,
        max_depth=settings.max_depth,
        max_future_skew_s=settings.max_future_skew_s,
    )
    counters = RouterCounters()
    handoff = Handoff()  # what the router decoded, for the window agent and the sinks
    register_router(app, settings, router, partitions, counters, handoff)
    processor = register_windows(
        app, settings, window_config(settings), names, partitions, handoff
    )
    register_window_views(app, processor)
    training = register_training(app, settings, names, partitions)
    register_training_views(app, training)
    sinks = register_sinks(app, settings, names, partitions, handoff)
    jobs = register_jobs(app, settings, names, partitions)
    sessions = register_sessions(
        app, settings, names, partitions, settings.session_idle_timeout_s
    )
    engines = register_engine_status(app, settings, names, partitions)
    register_state_views(app, settings, names, jobs, sessions, engines)
    # A topic left out of the group's assignment is assigned again (/health says so).
    gaps = complete_assignment(app)
    register_web(
        app,
        counters,
        {
            "windows": lambda: {
                "records_emitted": processor.emitted,
                "late_revisions": processor.late_events,
                "too_late": processor.too_late,
                "refused": dict(processor.refused),
            },
            "training": lambda: dict(training.counts()),
            "jobs": lambda: dict(Counter(j["status"] for j in jobs.records())),
            "sinks": lambda: {
                s.channel.name: {"lines_written": s.lines_written, "duplicates": s.duplicates}
                for s in sinks
            },
        },
        gaps,
    )
    register_prometheus(app, counters, processor, sinks)
    register_dashboard(app)
    guard_reads(app, settings)
    return app


def window_config(settings: Settings) -> WindowConfig:
    """The window rules from the settings."""
    return WindowConfig(
        sizes=settings.window_sizes,
        allowed_lateness_s=settings.window_lateness_s,
        grace_s=settings.window_grace_s,
        retention_s=settings.window_retention_s,
        idle_timeout_s=settings.window_idle_timeout_s,
        max_future_skew_s=settings.max_future_skew_s,
    )


async def prepare(settings: Settings) -> tuple[Settings, dict[str, int]]:
    """Fail fast if the broker is unreachable; decide the replica counts for the
    cluster's size; create the topics; answer the settings and the partition counts."""
    settings = replication(settings, await check_broker(settings))
    states = await ensure_topics(settings)
    return settings, {s.name: s.partitions for s in states}


def run_worker(settings: Settings) -> None:
    """Run one worker until it is stopped (SIGINT/SIGTERM)."""
    check_versions()
    client_log = logging.getLogger("aiokafka")
    client_log.setLevel(logging.CRITICAL)  # a failed pre-flight is reported in one line
    try:
        settings, partitions = asyncio.run(prepare(settings))
    finally:
        client_log.setLevel(logging.NOTSET)
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = build_worker_app(settings, partitions)
    tune_gc()
    worker = faust.Worker(
        app,
        loglevel=settings.log_level.upper(),
        quiet=True,
        # faust sets up logging again when it starts: in the same format as ours.
        logging_config=faust_logging_config(
            settings.log_level,
            settings.log_format,
            worker_name(settings.app_id, settings.advertised_url),
        ),
    )
    if settings.log_format == "json":
        worker.spinner = None  # its characters on a terminal are no log lines
    worker.execute_from_commandline()


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a long-running worker: everything
    loaded so far (modules, the app) is moved out of its reach, and full collections
    are rarer (GC_THRESHOLDS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
