"""The command line: --help everywhere, one-line errors with exit code 2, and the pure
parts of replay and export."""

from __future__ import annotations

import csv
import inspect
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from streams.cli import fleet
from streams.domain.windows import latest_revisions
from streams.kafka.export import COLUMNS, write_csv, write_parquet
from streams.kafka.fleet_publisher import publish_fleet
from streams.kafka.replay import parse_lines

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
