"""Log setup (streams.runtime.logs): the JSON lines' fields, and a process whose
logging is set up in JSON writes nothing else on stderr, warnings and an uncaught
exception included."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from streams.runtime.logs import (
    JsonFormatter,
    faust_logging_config,
    iso_utc,
    logging_config,
    worker_name,
)

WORKER = worker_name("es-test", "http://10.0.0.7:6066")


def record(msg: str = "hello %s", args: Any = ("world",), level: int = logging.WARNING,
           exc_info: Any = None, **extra: Any) -> logging.LogRecord:
    made = logging.getLogger("streams.test").makeRecord(
        "streams.test", level, __file__, 10, msg, args, exc_info, extra=extra or None
    )
    return made


def line(made: logging.LogRecord) -> dict[str, Any]:
    text = JsonFormatter(WORKER).format(made)
    assert "\n" not in text  # one record, one line
    doc = orjson.loads(text)
    assert isinstance(doc, dict)
    return doc


def test_worker_name_is_the_app_id_and_the_url() -> None:
    assert WORKER == "es-test@http://10.0.0.7:6066"


@pytest.mark.parametrize(
    ("created", "stamp"),
    [(0.0, "1970-01-01T00:00:00.000Z"), (1_700_000_000.5, "2023-11-14T22:13:20.500Z")],
)
def test_iso_utc(created: float, stamp: str) -> None:
    assert iso_utc(created) == stamp


def test_a_record_has_the_fields_a_pipeline_reads() -> None:
    made = record()
    doc = line(made)
    assert doc == {
        "ts": iso_utc(made.created),
        "level": "WARNING",
        "logger": "streams.test",
        "message": "hello world",
        "worker": WORKER,
    }
    assert datetime.fromisoformat(doc["ts"]).tzinfo == UTC


def test_topic_and_partition_come_from_extra() -> None:
    doc = line(record(topic="engine.ingest", partition=3))
    assert (doc["topic"], doc["partition"]) == ("engine.ingest", 3)
    assert line(record(partition=0))["partition"] == 0  # partition 0 is a partition


def test_exception_text_with_exc_info() -> None:
    try:
        raise RuntimeError("the broker went away")
    except RuntimeError:
        doc = line(record(level=logging.ERROR, exc_info=sys.exc_info()))
    assert doc["exception"].startswith("Traceback (most recent call last)")
    assert doc["exception"].rstrip().endswith("RuntimeError: the broker went away")
    assert "exception" not in line(record(exc_info=(None, None, None)))


def test_a_multi_line_message_stays_one_line() -> None:
    doc = line(record("a table:\n| x |\n| y |", ()))
    assert doc["message"] == "a table:\n| x |\n| y |"


def test_mode_structured_data_is_kept() -> None:
    doc = line(record(data={"app": "x", "n": 2}))
    assert doc["data"] == {"app": "x", "n": 2}


def test_arguments_that_do_not_fit_the_message_are_kept() -> None:
    doc = line(record("%d events", ("many",)))
    assert "%d events" in doc["message"] and "many" in doc["message"]


def test_values_json_cannot_hold_are_written_all_the_same() -> None:
    doc = line(record("bytes %s", ("\udcff",), topic=object()))
    assert doc["message"].startswith("bytes ")
    assert doc["topic"].startswith("<object object")


def test_values_json_cannot_hold_inside_lists_are_written_all_the_same() -> None:
    doc = line(record(data={"keys": ["ok", "\udcff"], "pair": ("a", "\udcfe")}))
    assert doc["data"]["keys"][0] == "ok" and doc["data"]["keys"][1].startswith("\\udc")
    assert doc["data"]["pair"][0] == "a"


def test_logging_config_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="'yaml' must be one of: text, json"):
        logging_config("info", "yaml", WORKER)


def test_text_leaves_faust_its_own_format_json_does_not() -> None:
    assert faust_logging_config("info", "text", WORKER) is None
    config = faust_logging_config("debug", "json", WORKER)
    assert config is not None
    assert config["root"]["level"] == "DEBUG"
    assert config["formatters"]["enginestream"]["()"] is JsonFormatter
    assert config["handlers"]["stderr"]["stream"] == "ext://sys.stderr"
    assert config["disable_existing_loggers"] is False


PROGRAM = """
import logging, warnings
from streams.runtime.logs import setup_logging
setup_logging("{level}", "{fmt}", "es@http://h:1")
logging.getLogger("faust.worker").info("an info record")
logging.getLogger("aiokafka").debug("a debug record")
warnings.warn("a warning")
import threading
worker = threading.Thread(target=lambda: 1 / 0, name="engine-loop")
worker.start()
worker.join()
raise RuntimeError("uncaught")
"""


def run_program(level: str, fmt: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM.format(level=level, fmt=fmt)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_in_json_stderr_holds_only_json_lines() -> None:
    result = run_program("info", "json")
    assert result.returncode == 1
    docs = [orjson.loads(text) for text in result.stderr.splitlines()]
    assert [(d["level"], d["logger"]) for d in docs] == [
        ("INFO", "faust.worker"), ("WARNING", "py.warnings"), ("CRITICAL", "enginestream"),
        ("CRITICAL", "enginestream")]
    assert "a warning" in docs[1]["message"]
    assert "engine-loop" in docs[2]["message"]
    assert "ZeroDivisionError" in docs[2]["exception"]
    assert "RuntimeError: uncaught" in docs[3]["exception"]
    assert {d["worker"] for d in docs} == {"es@http://h:1"}


def test_text_at_the_level_asked() -> None:
    result = run_program("debug", "text")
    lines = result.stderr.splitlines()
    assert any("[DEBUG]: a debug record" in text for text in lines), result.stderr
    assert any("[INFO]: an info record" in text for text in lines), result.stderr
    assert "Traceback" in result.stderr  # text mode leaves Python's own output alone
