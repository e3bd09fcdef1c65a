"""The Faust application: one place that turns Settings into a configured faust.App."""

from __future__ import annotations

import logging
from typing import Any, cast

import faust

from streams.config.settings import Settings
from streams.runtime import consumer, stall_timer
from streams.runtime.producer import WorkerProducer

# Large enough for router output batches and oversized inputs that must be read
# (to dead-letter them); the local broker accepts messages up to 8 MiB.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def create_app(settings: Settings) -> faust.App:
    """A Faust app for `settings`, with no agents yet (see streams.runtime.worker)."""
    brokers = [f"kafka://{server}" for server in settings.bootstrap_servers.split(",")]
    credentials = None
    if settings.security_protocol != "PLAINTEXT":
        credentials = _credentials(settings)
    app = faust.App(
        settings.app_id,
        broker=brokers,
        broker_credentials=credentials,
        store="memory://",
        datadir=str(settings.data_dir / "faust" / settings.app_id),
        autodiscover=False,
        topic_partitions=settings.partitions,
        # The worker decides "auto" from the cluster's size first (streams.kafka.admin).
        topic_replication_factor=settings.replication_factor or 1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        # A crashed worker's partitions move to the others within seconds, not a minute.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        broker_commit_interval=settings.commit_interval_s,
        producer_acks=-1,
        producer_max_request_size=MAX_MESSAGE_BYTES,
        consumer_max_fetch_size=MAX_MESSAGE_BYTES,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        # What the assignor tells the other workers: where to forward and fan out to.
        canonical_url=settings.advertised_url,
    )
    # The consumer without faust's per-message wait_first (see streams.runtime.consumer), and
    # the root logger kept at our level (faust.Worker sets it to DEBUG).
    consumer.install(app, settings.fetch_wait_s)
    # Idempotent, and keeping its topics' leaders (streams.runtime.producer): set on the
    # transport the consumer installed, before anything creates the producer.
    cast(Any, app.transport).Producer = WorkerProducer
    keep_root_log_level(app, settings.log_level)
    # An input partition left behind with nothing in flight is read again.
    stall_timer.guard_stalled_partitions(app)
    return app


def _credentials(settings: Settings) -> faust.auth.Credentials:
    from streams.tls import client_ssl_context

    context = None
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        # The same context as the pre-flight's (streams.kafka.admin), which has already
        # named any unusable file.
        context = client_ssl_context(
            settings.ssl_cafile,
            settings.ssl_certfile,
            settings.ssl_keyfile,
            settings.ssl_key_password,
        )
    if settings.security_protocol == "SSL":
        assert context is not None
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password,
        ssl_context=context,
        mechanism=settings.sasl_mechanism,
    )


def keep_root_log_level(app: faust.App, level: str) -> None:
    """Put the root logger back at `level` once the worker has set up logging.

    faust.Worker sets the root logger to DEBUG to feed its terminal spinner (when its
    log level is WARN or above), so every log.debug in faust, mode and aiokafka built a
    LogRecord and ran the handlers (about a tenth of a busy worker's time).
    """
    wanted = logging.getLevelName(level.upper())

    @app.task
    async def _restore_root_level() -> None:
        root = logging.getLogger()
        if isinstance(wanted, int) and root.level < wanted:
            root.setLevel(wanted)




def raw_table(app: faust.App, name: str, partitions: int, help: str) -> faust.Table:
    """A changelog-backed table whose keys and values are bytes, stored as they are
    (the agents encode them with orjson). The serializers are set before first use,
    when the changelog topic is created with them."""
    table = cast(
        faust.Table,
        app.Table(name, partitions=partitions, key_type=bytes, value_type=bytes, help=help),
    )
    table.key_serializer = "raw"
    table.value_serializer = "raw"
    return table
