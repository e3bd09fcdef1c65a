"""Log setup: the level and format (text or JSON lines) of every command's log records
on stderr, faust's and mode's included.

The JSON format is one object per line with `ts` (ISO 8601, UTC), `level`, `logger`,
`message` and `worker` (the app id and the advertised URL), `topic` and `partition`
when the record concerns one (passed as `extra=`), `exception` for a record with
exc_info. No faust here: every command sets it up, the worker's too before faust
takes over (see faust_logging_config).
"""

from __future__ import annotations

import logging
import logging.config
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson

from streams.config.settings import LOG_FORMATS, LOG_LEVELS

LEVELS = LOG_LEVELS  # the command line's --log-level choices
# What the command line's own records look like in text mode (mode's, without colour).
TEXT_FORMAT = "[%(asctime)s] [%(process)s] [%(levelname)s]: %(message)s"
# Record attributes passed with `extra=` that a JSON line carries as they are.
EXTRA_KEYS = ("topic", "partition")


def worker_name(app_id: str, url: str) -> str:
    """What identifies a worker in its log lines: its app id and advertised URL."""
    return f"{app_id}@{url}"


def iso_utc(created: float) -> str:
    """An epoch time as ISO 8601 in UTC, to the millisecond (2024-05-01T12:00:00.123Z)."""
    stamp = datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.removesuffix("+00:00") + "Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, worker: str) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        doc: dict[str, Any] = {
            "ts": iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
            "worker": self.worker,
        }
        for key in EXTRA_KEYS:
            value = record.__dict__.get(key)
            if value is not None:
                doc[key] = value
        data = record.__dict__.get("data")  # mode's structured extras
        if isinstance(data, dict) and data:
            doc["data"] = data
        if record.exc_info and record.exc_info[0] is not None:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(doc, default=repr).decode()
        except TypeError:  # a lone surrogate in some text: orjson encodes UTF-8 only
            return orjson.dumps(_printable(doc), default=repr).decode()


def _message(record: logging.LogRecord) -> str:
    # A message whose arguments do not fit its format would make logging print a
    # traceback of its own on stderr: the line keeps both instead.
    try:
        return record.getMessage()
    except Exception:
        return f"{record.msg!r} % {record.args!r}"


def _printable(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {str(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_printable(v) for v in value]
    return value


def logging_config(level: str, fmt: str, worker: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` configuration: the root logger at `level`, one
    handler on stderr in format `fmt` (one of LOG_FORMATS)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r} must be one of: {', '.join(LOG_FORMATS)}")
    formatter: dict[str, Any] = (
        {"()": JsonFormatter, "worker": worker} if fmt == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        # Loggers created at import time (faust's, aiokafka's, ours) must keep working.
        "disable_existing_loggers": False,
        "formatters": {"enginestream": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "enginestream",
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }


def setup_logging(level: str, fmt: str, worker: str) -> None:
    """Send every log record at `level` or above to stderr in format `fmt`. In JSON,
    Python's warnings and an uncaught exception are log records too, so that stderr
    holds nothing but JSON lines."""
    logging.config.dictConfig(logging_config(level, fmt, worker))
    logging.captureWarnings(fmt == "json")
    if fmt == "json":
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread


def faust_logging_config(level: str, fmt: str, worker: str) -> dict[str, Any] | None:
    """What faust.Worker's `logging_config` should be: None (faust's own coloured
    text) in text mode, else the same JSON lines as the command line's."""
    return None if fmt == "text" else logging_config(level, fmt, worker)


def _log_uncaught(
    kind: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    logging.getLogger("enginestream").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # a thread's normal way out, as threading treats it
        return
    name = args.thread.name if args.thread is not None else "a thread"
    logging.getLogger("enginestream").critical(
        "uncaught exception in %s", name,
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
    )
