"""The command line: --help everywhere, one-line errors with exit code 2, --version,
the global log options, the one line without the worker's packages, and the pure
parts of replay and export."""

from __future__ import annotations

import csv
import inspect
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from streams import cli_commands
from streams.cli import WORKER_MODULES
from streams.cli_commands import fleet
from streams.config.settings import Settings
from streams.domain.windows import latest_revisions
from streams.kafka.admin import ClusterNotReady
from streams.kafka.export import COLUMNS, write_csv, write_parquet
from streams.kafka.fleet_publisher import publish_fleet
from streams.kafka.replay import parse_lines
from streams.runtime.logs import setup_logging

COMMANDS = [
    [], ["worker"], ["fleet"], ["demo"], ["topics"], ["topics", "create"],
    ["topics", "describe"], ["export"], ["export", "windows"], ["replay"], ["tail"],
]  # fmt: skip


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_everywhere(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: enginestream" in result.stdout


def test_fleet_options_are_publish_fleets_keywords() -> None:
    # `fleet` passes its options on as keywords: a name out of step would fail at run time.
    keywords = {
        name
        for name, parameter in inspect.signature(publish_fleet).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert {param.name for param in fleet.params} == keywords


@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],
        ["fleet", "--rate", "-1"],
        ["fleet", "--engines", "zero"],
        ["export", "windows", "--format", "xlsx"],
        ["export", "windows", "--from", "10", "--to", "5"],
        ["replay", "/nonexistent/file.jsonl"],
        ["replay", __file__, "--type", "not_a_type"],
        ["tail"],
    ],
    ids=lambda a: " ".join(a),
)
def test_bad_argument_is_one_line_and_exit_2(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


def test_bad_setting_is_one_line_and_exit_2() -> None:
    import os

    env = {**os.environ, "ENGINESTREAM_WEB_PORT": "not-a-port"}
    result = run("topics", "describe", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: ENGINESTREAM_WEB_PORT='not-a-port' is not an integer "
        "(see: enginestream topics describe --help)"
    ]


def test_unreachable_broker_fails_fast_with_what_to_set() -> None:
    import os
    import time

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    started = time.monotonic()
    result = run("topics", "describe", env=env)
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "KAFKA_BOOTSTRAP_SERVERS" in lines[0]


def test_replay_parse_reports_line_numbers() -> None:
    lines = [
        b'{"event_type": "engine_execution", "engine_id": "e"}\n',
        b"\n",
        b"{not json\n",
        b"[1, 2]\n",
        b'{"engine_id": "x"}\n',
        b'{"event_type": "mystery"}\n',
    ]
    parsed = list(parse_lines(iter(lines), default_type=None))
    assert [(n, t) for n, t, _, _ in parsed] == [
        (1, "engine_execution"), (3, None), (4, None), (5, None), (6, None)]
    assert "not JSON" in parsed[1][3]
    assert parsed[2][3] == "not a JSON object"
    assert "no event type" in parsed[3][3]
    assert "mystery" in parsed[4][3]
    with_default = list(parse_lines(iter(lines[4:5]), default_type="engine_execution"))
    assert with_default[0][1] == "engine_execution"


def window(engine: str, start: int, revision: int, count: int, size: int = 60) -> dict:
    return {"engine_id": engine, "kind": "engine", "window_start": start,
            "window_end": start + size, "window_size_s": size, "revision": revision,
            "count": count}


def test_latest_revisions_keeps_the_last_revision_in_range() -> None:
    records = [window("a", 0, 0, 5), window("a", 0, 1, 6), window("b", 60, 0, 2),
               window("a", 120, 0, 1), window("a", 0, 0, 9, size=300)]
    rows = latest_revisions(records, 0, 120, size=60)
    assert [(r["engine_id"], r["window_start"], r["revision"], r["count"]) for r in rows] == [
        ("a", 0, 1, 6), ("b", 60, 0, 2)]
    assert len(latest_revisions(records)) == 4


def test_csv_and_parquet_hold_the_same_rows(tmp_path: Path) -> None:
    rows = [{**window("a", 0, 1, 6), "latency_p95_ms": 12.5, "quality_score_mean": None},
            {**window("b", 60, 0, 2), "latency_p95_ms": 3.0, "quality_score_mean": 0.5}]
    with open(write_csv(rows, tmp_path / "w.csv")) as f:
        read = list(csv.DictReader(f))
    assert tuple(read[0]) == COLUMNS
    assert [r["count"] for r in read] == ["6", "2"]
    assert read[0]["quality_score_mean"] == ""
    table = pq.read_table(write_parquet(rows, tmp_path / "w.parquet"))
    assert table.column_names == list(COLUMNS)
    assert table.column("count").to_pylist() == [6, 2]
    assert table.column("quality_score_mean").to_pylist() == [None, 0.5]


# ---- --version, and the command line without the worker's packages ----------------------


def test_version_is_the_installed_distributions() -> None:
    result = run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"enginestream {metadata.version('enginestream')}\n"


def without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line in a process where `module` cannot be imported."""
    probe = (f"import sys\nsys.modules[{module!r}] = None\n"
             f"from streams.cli import main\nmain({list(args)!r})\n")  # fmt: skip
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)  # fmt: skip


@pytest.mark.parametrize("module", WORKER_MODULES)
def test_without_the_worker_extra_one_line_says_what_to_install(module: str) -> None:
    result = without(module, "topics", "describe")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"enginestream: the command line needs the worker's packages ({module} is not "
        "installed): pip install 'enginestream[worker]'"
    ]
    assert result.stdout == ""


def test_without_the_worker_extra_the_version_still_answers() -> None:
    result = without("click", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"enginestream {metadata.version('enginestream')}\n"


# ---- the global log options -----------------------------------------------------------


@pytest.fixture
def described(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """`topics describe` run in this process, without a broker: the settings it got and
    how it set up logging."""
    seen: list[Any] = []
    client_log = logging.getLogger("aiokafka")
    client_level = client_log.level  # the command sets it

    async def describe_topics(settings: Settings, names: list[str]) -> list[Any]:
        seen.append(settings)
        return []

    monkeypatch.setattr(cli_commands, "describe_topics", describe_topics)
    monkeypatch.setattr(cli_commands, "setup_logging", lambda *args: seen.append(args))
    for name in ("ENGINESTREAM_LOG_LEVEL", "ENGINESTREAM_LOG_FORMAT", "ENGINESTREAM_APP_ID",
                 "ENGINESTREAM_WEB_ADVERTISED_URL"):
        monkeypatch.delenv(name, raising=False)
    yield seen
    client_log.setLevel(client_level)


@pytest.mark.parametrize(
    ("env", "args", "level", "fmt"),
    [
        ({}, [], "warning", "text"),
        ({"ENGINESTREAM_LOG_LEVEL": "error", "ENGINESTREAM_LOG_FORMAT": "json"}, [],
         "error", "json"),
        ({"ENGINESTREAM_LOG_LEVEL": "error"}, ["--log-level", "DEBUG"], "debug", "text"),
        # the option stands for the variable, which is not read at all then
        ({"ENGINESTREAM_LOG_LEVEL": "verbose"}, ["--log-level", "critical"], "critical",
         "text"),
        ({"ENGINESTREAM_LOG_FORMAT": "yaml"}, ["--log-format", "JSON"], "warning", "json"),
    ],
)  # fmt: skip
def test_the_options_stand_for_the_variables(
    described: list[Any], monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
    args: list[str], level: str, fmt: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ENGINESTREAM_APP_ID", "es-cli")
    monkeypatch.setenv("ENGINESTREAM_WEB_ADVERTISED_URL", "http://10.0.0.7:6066")
    cli_commands.run([*args, "topics", "describe"])
    setup, settings = described
    assert setup == (level, fmt, "es-cli@http://10.0.0.7:6066")
    assert (settings.log_level, settings.log_format) == (level, fmt)


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        (["--log-level", "verbose", "worker"], {}, "--log-level"),
        (["--log-format", "yaml", "worker"], {}, "--log-format"),
        (["worker"], {"ENGINESTREAM_LOG_FORMAT": "yaml"}, "ENGINESTREAM_LOG_FORMAT"),
    ],
)
def test_a_bad_log_option_or_variable_is_one_line_and_exit_2(
    args: list[str], env: dict[str, str], names: str
) -> None:
    result = run(*args, env={**os.environ, **env})
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and names in lines[0], lines


@pytest.fixture
def logging_put_back() -> Iterator[None]:
    """The root logger, Python's warnings and the exception hook as they were, after
    the test set up logging for real."""
    root = logging.getLogger()
    level, handlers, hook = root.level, list(root.handlers), sys.excepthook
    yield
    root.setLevel(level)
    root.handlers[:] = handlers
    sys.excepthook = hook
    logging.captureWarnings(False)


def test_in_json_a_command_that_fails_says_it_in_one_json_line(
    described: list[Any], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], logging_put_back: None,
) -> None:
    async def unreachable(settings: Settings, names: list[str]) -> list[Any]:
        raise ClusterNotReady("cannot reach Kafka at 127.0.0.1:1")

    monkeypatch.setattr(cli_commands, "describe_topics", unreachable)
    monkeypatch.setattr(cli_commands, "setup_logging", setup_logging)  # the real one
    with pytest.raises(SystemExit) as exited:
        cli_commands.run(["--log-format", "json", "topics", "describe"])
    assert exited.value.code == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    doc = orjson.loads(lines[0])
    assert (doc["level"], doc["logger"]) == ("ERROR", "enginestream")
    assert doc["message"] == "cannot reach Kafka at 127.0.0.1:1"
