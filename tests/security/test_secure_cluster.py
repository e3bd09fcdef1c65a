"""The worker, the CLI and the SDK against a secured broker (tests/security/secure_broker.py).

- Over SASL_SSL with SCRAM-SHA-512, and over mutual TLS with a client certificate
  whose key is encrypted: the CLI creates the topics, the worker starts, an event
  published by the SDK is routed by the worker onto its typed topic.
- A wrong password, a broker certificate not signed by KAFKA_SSL_CAFILE, and no
  client certificate on the mutual-TLS listener: the worker and the CLI exit with
  code 1 within seconds, with one line naming the variables to fix.
- The SASL password and the key's password never show: not in the worker's log (at
  info level), the CLI's output, the SDK's log, nor any view's body.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.client import ENGINE_EVENT, Publisher, events
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.admin import BrokerUnreachable, check_broker, client_options
from tests.security.conftest import SCRAM_USER
from tests.security.secure_broker import SecureBroker
from tests.worker_process import WorkerProcess, free_port

pytestmark = pytest.mark.integration

# Every security variable, so that nothing leaks in from the caller's environment.
SECURITY_VARIABLES = (
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "KAFKA_SSL_CERTFILE",
    "KAFKA_SSL_KEYFILE",
    "KAFKA_SSL_KEY_PASSWORD",
)
VIEWS = ("/health", "/stats", "/engines", "/training/stats", "/metrics")
# A pre-flight that waited for its 10 s timeout would not be "fast".
PREFLIGHT_LIMIT_S = 5.0
# A whole process (interpreter, imports, pre-flight) on a busy two-core machine.
PROCESS_LIMIT_S = 30.0
# The CLI with the project's loggers at info level (the CLI itself configures none).
CLI_AT_INFO = (
    "import logging, sys; logging.basicConfig(level=logging.INFO); "
    "from streams.cli import main; main(sys.argv[1:])"
)


def security_env(broker: SecureBroker, listener: str) -> dict[str, str]:
    """The variables a client of `listener` ("sasl_ssl" or "mtls") sets."""
    env = dict.fromkeys(SECURITY_VARIABLES, "")
    certs = broker.certs
    env["KAFKA_SSL_CAFILE"] = str(certs.ca)
    if listener == "sasl_ssl":
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=broker.sasl_bootstrap,
            KAFKA_SECURITY_PROTOCOL="SASL_SSL",
            KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
            KAFKA_SASL_USERNAME=SCRAM_USER,
            KAFKA_SASL_PASSWORD=broker.users[SCRAM_USER],
        )
    else:
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=broker.mtls_bootstrap,
            KAFKA_SECURITY_PROTOCOL="SSL",
            KAFKA_SSL_CERTFILE=str(certs.client_cert),
            KAFKA_SSL_KEYFILE=str(certs.client_key),
            KAFKA_SSL_KEY_PASSWORD=certs.client_key_password,
        )
    return env


def isolated(tmp_path: Path) -> dict[str, str]:
    """A topic prefix, app id, data dir and web port of the test's own."""
    tag = uuid.uuid4().hex[:10]
    return {
        "ENGINESTREAM_TOPIC_PREFIX": f"s{tag}.",
        "ENGINESTREAM_APP_ID": f"es-sec-{tag}",
        "ENGINESTREAM_DATA_DIR": str(tmp_path / "data"),
        "ENGINESTREAM_WEB_PORT": str(free_port()),
        "ENGINESTREAM_PARTITIONS": "1",
        "ENGINESTREAM_LOG_LEVEL": "info",
    }


def secrets_of(broker: SecureBroker) -> tuple[str, ...]:
    """The strings that must never show."""
    return (broker.users[SCRAM_USER], broker.certs.client_key_password)


@dataclass
class Run:
    """A finished command: exit code, combined output, wall time."""

    returncode: int
    output: str
    seconds: float


def start_cli(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], float]:
    """Start `enginestream <args>` with its loggers at info level."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI_AT_INFO, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, time.monotonic()


def start_worker(env: dict[str, str]) -> tuple[subprocess.Popen[str], float]:
    """Start `enginestream worker` (it configures its own logging)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return proc, time.monotonic()


def finish(started: tuple[subprocess.Popen[str], float], timeout: float = 120.0) -> Run:
    """Wait for a started command; answer how it ended."""
    proc, at = started
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"{proc.args!r} still ran after {timeout:g} s:\n{output}")
    return Run(proc.returncode, output, time.monotonic() - at)


def get_body(url: str) -> bytes:
    """The body of GET `url`, whatever its status."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        return bytes(exc.read())


async def publish_one(options: dict[str, Any], engine_id: str) -> int:
    """Publish one RequestServed event with the SDK; answer how many were acknowledged."""
    publisher = Publisher(**options)
    await publisher.start()
    try:
        publisher.publish(
            ENGINE_EVENT, events.request_served(engine_id, "/v1/chat", "qwen3-4b", "local", 7, 200)
        )
        await publisher.flush(30.0)
    finally:
        stats = await publisher.close()
    return stats.published


async def read_until(
    settings: Settings, topic: str, found: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    """Read `topic` from its start, over the secured connection, until an event
    satisfies `found`; answer that event (or fail at the deadline)."""
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        # The topics were created with settings.partitions each (`topics create`).
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    value = orjson.loads(record.value)
                    for doc in value if isinstance(value, list) else [value]:
                        if found(doc):
                            return dict(doc)
        pytest.fail(f"no matching event on {topic} within {timeout:g} s")
    finally:
        await consumer.stop()


def sdk_options(env: dict[str, str]) -> dict[str, Any]:
    """The SDK's keyword options for the same connection as `env` (not read from it)."""
    options: dict[str, Any] = {
        "bootstrap_servers": env["KAFKA_BOOTSTRAP_SERVERS"],
        "topic_prefix": env["ENGINESTREAM_TOPIC_PREFIX"],
        "security_protocol": env["KAFKA_SECURITY_PROTOCOL"],
        "ssl_cafile": env["KAFKA_SSL_CAFILE"],
    }
    if env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL":
        options.update(
            sasl_mechanism=env["KAFKA_SASL_MECHANISM"],
            sasl_username=env["KAFKA_SASL_USERNAME"],
            sasl_password=env["KAFKA_SASL_PASSWORD"],
        )
    else:
        options.update(
            ssl_certfile=env["KAFKA_SSL_CERTFILE"],
            ssl_keyfile=env["KAFKA_SSL_KEYFILE"],
            ssl_key_password=env["KAFKA_SSL_KEY_PASSWORD"],
        )
    return options


@pytest.mark.parametrize("listener", ["sasl_ssl", "mtls"])
def test_an_event_goes_through_the_secured_cluster(
    secure_broker: SecureBroker, listener: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {**security_env(secure_broker, listener), **isolated(tmp_path)}
    settings = Settings.from_env(env)
    names = TopicNames(settings.topic_prefix)

    created = finish(start_cli(env, "topics", "create"))
    assert created.returncode == 0, created.output
    assert f"{names.typed[ENGINE_EVENT]}\t1 partitions" in created.output

    engine_id = f"engine-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(env, log_path=tmp_path / "worker.log").start()
    try:
        worker.wait_ready(timeout=90)
        # aiokafka's own level too: the CLI's in-process tests may have raised it.
        with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="aiokafka"):
            published = asyncio.run(publish_one(sdk_options(env), engine_id))
        assert published == 1
        routed = asyncio.run(
            read_until(
                settings,
                names.typed[ENGINE_EVENT],
                lambda doc: doc.get("engine_id") == engine_id,
                timeout=60,
            )
        )
        bodies = {
            path: get_body(worker.url + path)
            for path in (*VIEWS, f"/engines/{engine_id}/windows")
        }
    finally:
        worker.stop()

    assert routed["event"] == "RequestServed" and routed["latency_ms"] == 7
    worker_log = (tmp_path / "worker.log").read_text(errors="replace")
    # The logs are at info level indeed (so the absence below means something), and
    # on SASL_SSL both the worker and the SDK logged in with SCRAM-SHA-512.
    assert "INFO" in worker_log, worker_log[-2000:]
    if listener == "sasl_ssl":
        login = f"Authenticated as {SCRAM_USER} via SCRAM-SHA-512"
        assert login in worker_log and login in caplog.text
    assert b'"ready":true' in bodies["/health"].replace(b" ", b"")
    for secret in secrets_of(secure_broker):
        assert secret not in worker_log
        assert secret not in created.output
        assert secret not in caplog.text
        for path, body in bodies.items():
            assert secret.encode() not in body, path


@dataclass(frozen=True)
class Refusal:
    """A misconfigured client: what it changes, and the variables the error must name."""

    listener: str
    change: Callable[[SecureBroker], dict[str, str]]
    names: tuple[str, ...]


REFUSALS = {
    "wrong_password": Refusal(
        "sasl_ssl",
        lambda broker: {"KAFKA_SASL_PASSWORD": "not-" + broker.users[SCRAM_USER]},
        ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"),
    ),
    "untrusted_broker_certificate": Refusal(
        "sasl_ssl",
        lambda broker: {"KAFKA_SSL_CAFILE": str(broker.certs.untrusted_ca)},
        ("KAFKA_SSL_CAFILE",),
    ),
    "no_client_certificate": Refusal(
        "mtls",
        lambda broker: {
            "KAFKA_SSL_CERTFILE": "",
            "KAFKA_SSL_KEYFILE": "",
            "KAFKA_SSL_KEY_PASSWORD": "",
        },
        ("KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"),
    ),
}


async def refused_publisher_state() -> str:
    """The state of an SDK publisher configured from the environment once started."""
    publisher = await Publisher.connect(connect_timeout=5.0)
    try:
        return publisher.state
    finally:
        await publisher.close(1.0)


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_client_fails_fast_naming_what_to_fix(
    secure_broker: SecureBroker,
    case: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusal = REFUSALS[case]
    env = {
        **security_env(secure_broker, refusal.listener),
        **isolated(tmp_path),
        **refusal.change(secure_broker),
    }

    # The pre-flight itself answers at once, not after its 10 s timeout.
    began = time.monotonic()
    with pytest.raises(BrokerUnreachable) as raised:
        asyncio.run(check_broker(Settings.from_env(env)))
    assert time.monotonic() - began < PREFLIGHT_LIMIT_S
    for name in refusal.names:
        assert name in str(raised.value)

    # The worker and the CLI, side by side: exit code 1 and one line that says it.
    started = {
        "worker": start_worker(env),
        "topics create": start_cli(env, "topics", "create"),
    }
    runs = {command: finish(process) for command, process in started.items()}
    hidden = [*secrets_of(secure_broker), env["KAFKA_SASL_PASSWORD"]]
    for command, run in runs.items():
        lines = run.output.strip().splitlines()
        assert run.returncode == 1, (command, run.output)
        assert len(lines) == 1 and lines[0].startswith("error: "), (command, run.output)
        for name in refusal.names:
            assert name in lines[0], (command, lines[0])
        assert run.seconds < PROCESS_LIMIT_S, (command, run.seconds)
        for secret in hidden:
            assert not secret or secret not in run.output, command

    # The SDK does not raise (the engine goes on serving) but says once, at ERROR,
    # what to fix, in the same words.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING, logger="streams.client.publisher"):
        assert asyncio.run(refused_publisher_state()) == "unavailable"
    said = [r.getMessage() for r in caplog.records
            if r.name == "streams.client.publisher" and r.levelno >= logging.ERROR]
    assert len(said) == 1, said
    for name in refusal.names:
        assert name in said[0], said[0]
    for secret in hidden:
        assert not secret or secret not in caplog.text
