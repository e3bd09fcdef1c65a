"""Validation micro-benchmark: the cost of the verdict on one valid event, per validator
and per event type, in-process (no broker). See README.md beside this file.

    .venv/bin/python -m bench.validation.run [--events 20000] [--seconds 0.25]

Validators, each built once per schema (schemas/v1) as the product builds its own:

* jsonschema: `Draft7Validator(schema, format_checker=FORMAT_CHECKER).is_valid`, the
  reference (it explains every rejection);
* fastjsonschema: `fastjsonschema.compile(schema, formats={"date-time": is_date_time})`,
  the verdict before;
* jsonschema_rs: `jsonschema_rs.Draft7Validator(schema, formats={"date-time":
  is_date_time}, validate_formats=True).is_valid`, the verdict now;
* check-before / check-now: the whole `SchemaRegistry.check` on a valid event, with
  fastjsonschema (the code as it was) and as shipped.

Events: the first `--events` of `Fleet().mixed()` by type (their mix is the "mixed"
row), and the valid examples of schemas/v1/examples for the two types the fleet does
not make (window_stats, dead_letter). Every event is checked valid by every validator
first. Each figure is the best of repeated timed passes of 500 events (a type with
fewer events repeats them), the validators taking turns, each for about `--seconds`
per row: the least disturbed pass, on a machine that others may be using.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from typing import Any

import fastjsonschema
import jsonschema_rs
import orjson
from jsonschema import Draft7Validator

from bench.common.machine import cpu_model, nproc, uptime
from streams.domain.validation import (
    FORMAT_CHECKER,
    SCHEMA_DIR,
    SchemaRegistry,
    Violation,
    is_date_time,
)
from streams.kafka.fleet import Fleet

Verdict = Callable[[Any], Any]
VALIDATORS = ("jsonschema", "fastjsonschema", "jsonschema_rs", "check-before", "check-now")
PASS_EVENTS = 500


def events(count: int) -> dict[str, list[dict[str, Any]]]:
    """Valid events by type: the fleet's first `count`, and the examples of the rest."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    mixed: list[dict[str, Any]] = []
    for event_type, event in itertools.islice(Fleet().mixed(), count):
        by_type.setdefault(event_type, []).append(event)
        mixed.append({"type": event_type, "event": event})
    for event_type in ("window_stats", "dead_letter"):
        examples = sorted((SCHEMA_DIR / "examples" / event_type / "valid").glob("*.json"))
        by_type[event_type] = [orjson.loads(p.read_bytes()) for p in examples]
    return {**dict(sorted(by_type.items())), "mixed": mixed}


def fastjsonschema_check(registry: SchemaRegistry) -> Callable[[str, Any], Violation | None]:
    """SchemaRegistry.check as it was: fastjsonschema's verdict, jsonschema to explain."""
    compiled = {
        name: fastjsonschema.compile(schema, formats={"date-time": is_date_time})
        for name, schema in registry.schemas.items()
    }

    def check(event_type: str, doc: Any) -> Violation | None:
        try:
            compiled[event_type](doc)
            return None
        except fastjsonschema.JsonSchemaException:
            return registry.explain(event_type, doc)

    return check


def verdicts(registry: SchemaRegistry) -> dict[str, Callable[[str], Verdict]]:
    """Per validator: event type -> a one-argument verdict on a document of that type."""
    reference = {
        n: Draft7Validator(s, format_checker=FORMAT_CHECKER) for n, s in registry.schemas.items()
    }
    compiled = {
        n: fastjsonschema.compile(s, formats={"date-time": is_date_time})
        for n, s in registry.schemas.items()
    }
    rust = {
        n: jsonschema_rs.Draft7Validator(
            s, formats={"date-time": is_date_time}, validate_formats=True
        )
        for n, s in registry.schemas.items()
    }
    before = fastjsonschema_check(registry)
    return {
        "jsonschema": lambda t: reference[t].is_valid,
        "fastjsonschema": lambda t: compiled[t],
        "jsonschema_rs": lambda t: rust[t].is_valid,
        "check-before": lambda t: lambda doc: before(t, doc),
        "check-now": lambda t: lambda doc: registry.check(t, doc),
    }


def mixed_verdict(per_type: Callable[[str], Verdict]) -> Verdict:
    """A verdict on {"type", "event"} items, dispatching on the type as the router does."""
    by_type: dict[str, Verdict] = {}

    def verdict(item: dict[str, Any]) -> Any:
        event_type = item["type"]
        if event_type not in by_type:
            by_type[event_type] = per_type(event_type)
        return by_type[event_type](item["event"])

    return verdict


def assert_all_valid(name: str, verdict: Verdict, docs: Sequence[Any]) -> None:
    """Every event is valid for every validator: the figures are of the accepting path."""
    for doc in docs:
        result = verdict(doc)
        if result is False or isinstance(result, Violation):
            raise AssertionError(f"{name} refuses a valid event: {doc}")


def best_per_event(
    candidates: dict[str, Verdict], docs: Sequence[Any], seconds: float
) -> dict[str, float]:
    """Seconds per event, per validator: the best of its passes over `docs`, each
    validator timed for about `seconds` (three passes at least), in turns."""
    best = dict.fromkeys(candidates, float("inf"))
    spent = dict.fromkeys(candidates, 0.0)
    passes = dict.fromkeys(candidates, 0)
    docs = list(docs) * -(-PASS_EVENTS // len(docs))  # a pass is never a handful of calls
    start = 0
    while running := [n for n in candidates if passes[n] < 3 or spent[n] < seconds]:
        chunk = docs[start : start + PASS_EVENTS]
        start = start + PASS_EVENTS if start + PASS_EVENTS < len(docs) else 0
        for name in running:
            verdict = candidates[name]
            began = time.perf_counter()
            for doc in chunk:
                verdict(doc)
            elapsed = time.perf_counter() - began
            spent[name] += elapsed
            passes[name] += 1
            best[name] = min(best[name], elapsed / len(chunk))
    return best


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="fleet events to draw")
    parser.add_argument("--seconds", type=float, default=0.25, help="timing per validator and row")
    args = parser.parse_args(argv)

    registry = SchemaRegistry()
    per_validator = verdicts(registry)
    print(
        f"machine: {cpu_model() or 'unknown CPU'}, nproc {nproc()}, "
        f"Python {platform.python_version()}; load: {uptime()}"
    )
    print(
        "versions: "
        + ", ".join(f"{p} {version(p)}" for p in ("jsonschema", "fastjsonschema", "jsonschema-rs"))
    )
    print("\nµs per valid event (events/s), best pass; speed-up = fastjsonschema / jsonschema_rs")
    header = f"{'type':<18} {'n':>6}" + "".join(f" {v:>21}" for v in VALIDATORS)
    print(header + f" {'speed-up':>9} {'check':>7}")
    for row, docs in events(args.events).items():
        candidates = {
            name: mixed_verdict(per_type) if row == "mixed" else per_type(row)
            for name, per_type in per_validator.items()
        }
        for name, verdict in candidates.items():
            assert_all_valid(name, verdict, docs)
        best = best_per_event(candidates, docs, args.seconds)
        cells = "".join(f" {best[v] * 1e6:8.2f} ({1 / best[v]:>10,.0f})" for v in VALIDATORS)
        speed_up = best["fastjsonschema"] / best["jsonschema_rs"]
        check_ratio = best["check-before"] / best["check-now"]
        print(f"{row:<18} {len(docs):>6}{cells} {speed_up:>8.1f}x {check_ratio:>6.1f}x")
    print(f"\nload after: {uptime()}")


if __name__ == "__main__":
    main()
