"""The `enginestream` command line."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import click
import orjson

from streams.admin import BrokerUnreachable, check_broker, describe_topics, ensure_topics
from streams.settings import Settings, SettingsError
from streams.topics import TopicNames

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


def _run(coro_factory: Callable[[], Any]) -> Any:
    """Run a coroutine; an unreachable broker is a one-line error and exit 1."""
    try:
        return asyncio.run(coro_factory())
    except BrokerUnreachable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """enginestream: validated, routed and windowed telemetry for AI inference engines.

    Settings come from the environment (KAFKA_BOOTSTRAP_SERVERS, ENGINESTREAM_*);
    see the README's configuration table.
    """


@main.command()
def worker() -> None:
    """Run one worker (router agents and web views) until Ctrl-C or SIGTERM."""
    from streams.worker import run_worker

    settings = _settings()
    try:
        run_worker(settings)
    except BrokerUnreachable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@main.group()
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


@main.command()
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
def fleet(
    engines: int,
    rate: float,
    duration: float | None,
    count: int | None,
    batch: int,
    error_rate: float,
    bad_every: int,
    seed: int,
) -> None:
    """Publish a synthetic engine fleet's events to engine.ingest."""
    from streams.fleet_publisher import publish_fleet

    settings = _settings()
    sent = _run(
        lambda: publish_fleet(
            settings,
            engines=engines,
            rate=rate,
            duration=duration,
            count=count,
            batch=batch,
            error_rate=error_rate,
            bad_every=bad_every,
            seed=seed,
        )
    )
    click.echo(f"sent {sent.events} events in {sent.messages} messages "
               f"({sent.bad} malformed messages)")


@main.command()
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
    worker_proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env)
    fleet_proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "fleet", "--engines", str(engines),
         "--rate", str(rate), "--batch", "25", "--bad-every", "8",
         "--seed", str(random.randrange(1 << 30))],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://{settings.web_host}:{settings.web_port}"
    click.echo(f"worker web views: {url}/health  {url}/stats   (Ctrl-C stops)")
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(2.0)
            if worker_proc.poll() is not None:
                click.echo("error: the worker exited; see its output above", err=True)
                sys.exit(1)
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
            stats = orjson.loads(response.read())["router"]
    except (OSError, ValueError, KeyError):
        return "waiting for the worker ..."
    routed = stats["events_routed"]
    dead = stats["dead_letters"]
    routed_text = ", ".join(f"{k} {v}" for k, v in sorted(routed.items())) or "none yet"
    dead_text = ", ".join(f"{k} {v}" for k, v in sorted(dead.items())) or "none"
    return (
        f"messages in {sum(stats['messages_in'].values())} | routed {sum(routed.values())} "
        f"({routed_text}) | dead letters {sum(dead.values())} ({dead_text})"
    )


if __name__ == "__main__":
    main()
