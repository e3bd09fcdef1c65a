"""The `enginestream` commands (click), their global options and their one-line errors.

Imported by streams.cli once the worker's packages are known to be installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import orjson

from streams.config.settings import LOG_FORMATS, Settings, SettingsError
from streams.config.topics import EVENT_ROUTES, TopicNames
from streams.kafka.admin import ClusterNotReady, check_broker, describe_topics, ensure_topics
from streams.runtime.logs import LEVELS, setup_logging, worker_name
from streams.version import installed_version

T = TypeVar("T")

log = logging.getLogger("enginestream")


@dataclasses.dataclass
class GlobalOptions:
    """The options given before the command, and the log format once it is known."""

    log_level: str | None = None
    log_format: str | None = None
    # Set by _settings(): errors after it are log records, JSON lines in json format.
    logging_as: str | None = None


# The running command's (one a process); run() starts each command line afresh.
_options = GlobalOptions()


def _settings() -> Settings:
    """The settings from the environment with the global options over them; sets up
    logging for the command (its level and format)."""
    options = _options
    env = dict(os.environ)
    if options.log_format is not None:
        env["ENGINESTREAM_LOG_FORMAT"] = options.log_format
    if options.log_level is not None:
        env.pop("ENGINESTREAM_LOG_LEVEL", None)  # not read: the option stands for it
    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    if options.log_level is not None:
        settings = dataclasses.replace(settings, log_level=options.log_level)
    setup_logging(
        settings.log_level,
        settings.log_format,
        worker_name(settings.app_id, settings.advertised_url),
    )
    options.logging_as = settings.log_format
    return settings


def _fail(message: str, code: int) -> NoReturn:
    """End the command with `message` as one line on stderr: a log record once logging
    is set up in JSON (so stderr holds only JSON lines), else `error: <message>`."""
    if _options.logging_as == "json":
        log.error(message)
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _run(coro_factory: Callable[[], Any]) -> Any:
    """Run a coroutine; an unreachable broker is a one-line error and exit 1."""
    # The client library logs each failed connection attempt, and a connection it
    # drops in a refused TLS handshake can fail in one of its callbacks, which asyncio
    # logs with a traceback as the loop closes; the one line below says it.
    for noisy in ("aiokafka", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    try:
        return asyncio.run(coro_factory())
    except ClusterNotReady as exc:
        _fail(str(exc), 1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    installed_version(), "--version", prog_name="enginestream", message="%(prog)s %(version)s"
)
@click.option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    default=None,
    help="Log level of every command, the worker's and faust's included "
    "(instead of ENGINESTREAM_LOG_LEVEL).",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS, case_sensitive=False),
    default=None,
    help="text, or json: one JSON object per line on stderr "
    "(instead of ENGINESTREAM_LOG_FORMAT).",
)
def cli(log_level: str | None, log_format: str | None) -> None:
    """enginestream: validated, routed and windowed telemetry for AI inference engines.

    Settings come from the environment (KAFKA_BOOTSTRAP_SERVERS, ENGINESTREAM_*);
    see the README's configuration table.
    """
    _options.log_level = None if log_level is None else log_level.lower()
    _options.log_format = None if log_format is None else log_format.lower()


def run(args: list[str]) -> None:
    """Run the command line on `args`: a bad argument is one line on stderr and exit 2."""
    global _options
    _options = GlobalOptions()
    try:
        cli.main(args=args, prog_name="enginestream", standalone_mode=False)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "enginestream"
        _fail(f"{exc.format_message()} (see: {command} --help)", 2)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)


def _global_args() -> list[str]:
    """The global options as given, for a child `enginestream` process."""
    options = _options
    args = []
    if options.log_level is not None:
        args += ["--log-level", options.log_level]
    if options.log_format is not None:
        args += ["--log-format", options.log_format]
    return args


@cli.command()
def worker() -> None:
    """Run one worker (router agents and web views) until Ctrl-C or SIGTERM."""
    from streams.runtime.versions import UnsupportedRuntime
    from streams.runtime.worker import run_worker
    from streams.web.auth import require_read_token

    settings = _settings()
    try:
        require_read_token(settings)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        run_worker(settings)
    except (ClusterNotReady, UnsupportedRuntime) as exc:
        _fail(str(exc), 1)


@cli.group()
def topics() -> None:
    """Create or describe the contract's topics."""


@topics.command("create")
def topics_create() -> None:
    """Create every topic with its partition count (existing ones are kept)."""
    settings = _settings()
    states = _run(lambda: ensure_topics(settings))
    for state in states:
        click.echo(f"{state.name}\t{state.partitions} partitions")


@topics.command("describe")
def topics_describe() -> None:
    """List the contract's topics that exist and their partition counts."""
    settings = _settings()
    names = [s.name for s in TopicNames(settings.topic_prefix).specs(settings.partitions)]
    states = _run(lambda: describe_topics(settings, names))
    found = {s.name: s.partitions for s in states}
    for name in names:
        click.echo(f"{name}\t{found.get(name, 'missing')}")


@cli.command()
@click.option("--engines", type=click.IntRange(1, 100_000), default=8, show_default=True)
@click.option("--rate", type=click.FloatRange(min=0.1), default=200.0, show_default=True,
              help="Events per second.")
@click.option("--duration", type=click.FloatRange(min=0), default=None,
              help="Seconds to run (default: until --count or Ctrl-C).")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Events to send.")
@click.option("--batch", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Events of one type per message.")
@click.option("--error-rate", type=click.FloatRange(0, 1), default=0.05, show_default=True)
@click.option("--bad-every", type=click.IntRange(min=0), default=50, show_default=True,
              help="Send one malformed message every N messages (0: never).")
@click.option("--seed", type=int, default=7, show_default=True)
def fleet(**options: Any) -> None:
    """Publish a synthetic engine fleet's events to engine.ingest."""
    from streams.kafka.fleet_publisher import publish_fleet

    # Each option is named as publish_fleet's keyword of the same meaning, which types
    # them; passing them on whole keeps one list of them, not two to keep in step.
    settings = _settings()
    sent = _run(lambda: publish_fleet(settings, **options))
    click.echo(f"sent {sent.events} events in {sent.messages} messages "
               f"({sent.bad} malformed messages)")


@cli.command()
@click.option("--engines", type=click.IntRange(1, 1000), default=8, show_default=True)
@click.option("--rate", type=click.FloatRange(min=1), default=300.0, show_default=True)
@click.option("--duration", type=click.FloatRange(min=1), default=None,
              help="Seconds to run (default: until Ctrl-C).")
def demo(engines: int, rate: float, duration: float | None) -> None:
    """Run a worker and a synthetic fleet, and print a live summary (Ctrl-C stops)."""
    settings = _settings()
    _run(lambda: check_broker(settings))
    _run(lambda: ensure_topics(settings))
    env = dict(os.environ)
    # Short windows, so that the first finals show within seconds (unless set).
    env.setdefault("ENGINESTREAM_WINDOW_SIZES", "10,60")
    env.setdefault("ENGINESTREAM_WINDOW_LATENESS", "2")
    env.setdefault("ENGINESTREAM_WINDOW_IDLE_TIMEOUT", "5")
    command = [sys.executable, "-m", "streams.cli", *_global_args()]
    worker_proc = subprocess.Popen([*command, "worker"], env=env)
    fleet_proc = subprocess.Popen(
        [*command, "fleet", "--engines", str(engines),
         "--rate", str(rate), "--batch", "25", "--bad-every", "8",
         "--seed", str(random.randrange(1 << 30))],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://{settings.web_host}:{settings.web_port}"
    click.echo(f"dashboard: {url}/dashboard   views: {url}/engines  {url}/stats   (Ctrl-C stops)")
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(2.0)
            if worker_proc.poll() is not None:
                _fail("the worker exited; see its output above", 1)
            click.echo(_summary_line(url))
    except KeyboardInterrupt:
        pass
    finally:
        for proc in (fleet_proc, worker_proc):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (fleet_proc, worker_proc):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        click.echo("stopped")


def _summary_line(url: str) -> str:
    try:
        with urllib.request.urlopen(f"{url}/stats", timeout=2) as response:
            stats = orjson.loads(response.read())
    except (OSError, ValueError):
        return "waiting for the worker ..."

    def listed(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v) or "none"

    router = stats.get("router", {})
    routed = router.get("events_routed", {})
    dead = router.get("dead_letters", {})
    training = stats.get("training", {})
    tiers = {t: training.get(t, 0) for t in ("gold", "silver", "bronze")}
    return (
        f"routed {sum(routed.values())} events | dead letters {sum(dead.values())} "
        f"({listed(dead)}) | windows {stats.get('windows', {}).get('records_emitted', 0)} "
        f"| samples {listed(tiers)}, below threshold {training.get('below_threshold', 0)} "
        f"| jobs {listed(stats.get('jobs', {}))}"
    )


@cli.group()
def export() -> None:
    """Export window metrics for ML pipelines."""


@export.command("windows")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv",
              show_default=True)
@click.option("--from", "start", type=float, default=None, help="Epoch seconds (inclusive).")
@click.option("--to", "end", type=float, default=None, help="Epoch seconds (exclusive).")
@click.option("--size", type=click.IntRange(min=1), default=None, help="Window size (s).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output file (default: <data dir>/exports/windows.<format>).")
def export_windows(
    fmt: str, start: float | None, end: float | None, size: int | None, out: Path | None
) -> None:
    """Write the latest revision of every window in [--from, --to) as CSV or Parquet."""
    from streams.domain.windows import latest_revisions
    from streams.kafka.export import WRITERS, read_window_records

    settings = _settings()
    if start is not None and end is not None and end <= start:
        raise click.BadParameter("--to must be after --from", param_hint="--to")
    records = _run(lambda: read_window_records(settings))
    rows = latest_revisions(
        records,
        float("-inf") if start is None else start,
        float("inf") if end is None else end,
        size,
    )
    path = out or settings.data_dir / "exports" / f"windows.{fmt}"
    WRITERS[fmt](rows, path)
    click.echo(f"wrote {len(rows)} windows to {path}")


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--type", "event_type", type=click.Choice(list(EVENT_ROUTES)), default=None,
              help="Event type of lines without an event_type field.")
@click.option("--rate", type=click.FloatRange(min=0.1), default=None,
              help="At most this many events per second.")
@click.option("--batch", type=click.IntRange(1, 10_000), default=500, show_default=True)
def replay(file: Path, event_type: str | None, rate: float | None, batch: int) -> None:
    """Stream a JSONL file of events into engine.ingest, with a progress bar."""
    from streams.kafka.replay import replay as run_replay

    settings = _settings()
    size = file.stat().st_size
    with click.progressbar(length=size, label=f"replaying {file.name}", file=sys.stderr) as bar:
        done = 0

        def advance(_line: int, position: int) -> None:
            nonlocal done
            bar.update(position - done)
            done = position

        report = _run(
            lambda: run_replay(
                settings, file, default_type=event_type, rate=rate, batch=batch,
                on_line=advance,
            )
        )
    for number, why in report.skipped[:20]:
        click.echo(f"line {number}: skipped: {why}", err=True)
    if len(report.skipped) > 20:
        click.echo(f"... and {len(report.skipped) - 20} more skipped lines", err=True)
    click.echo(
        f"replayed {report.events} events in {report.messages} messages; "
        f"{len(report.skipped)} lines skipped"
    )


@cli.command()
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest message.")
@click.option("--max", "limit", type=click.IntRange(min=1), default=None,
              help="Stop after this many messages.")
def tail(topic: str, from_beginning: bool, limit: int | None) -> None:
    """Print the messages of TOPIC (a contract name such as engine.dead-letter)."""
    from streams.kafka.tail import tail as run_tail

    settings = _settings()
    names = TopicNames(settings.topic_prefix)
    known = {s.name for s in names.specs(settings.partitions)}
    full = topic if topic in known else settings.topic_prefix + topic
    if full not in known:
        raise click.BadParameter(
            f"unknown topic {topic!r}; one of: {', '.join(sorted(known))}", param_hint="TOPIC"
        )
    with contextlib.suppress(KeyboardInterrupt):
        _run(lambda: run_tail(settings, full, from_beginning, limit, click.echo))

