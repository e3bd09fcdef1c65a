"""Router throughput: the Faust router against a plain aiokafka loop, on a real broker.

    .venv/bin/python -m bench.router.run [--events 200000] [--batch 500]
                                         [--out bench/router/results/latest.json]

Two input shapes of the same events (one event per message; JSON arrays of up to
`--batch` events of one type), each pre-produced to a fresh prefixed `engine.ingest`
before any consumer starts, then processed by:

* the router: one `enginestream worker` subprocess (tests/worker_process.py launches it);
* the baseline: a plain asyncio loop in a subprocess (bench/router/baseline.py, started
  through this module's `--baseline-child`): aiokafka consumer -> orjson.loads ->
  jsonschema Draft7Validator -> aiokafka producer, one output message per event;
* the same baseline validating with fastjsonschema first (streams.domain.validation's fast
  path, which the router uses), so that the comparison can be read both ways.

Every output topic is created here with `message.timestamp.type=LogAppendTime`, so
each output message carries the broker's time of append. Elapsed time for a run is
from the moment the processor's own code has its first input message in hand
(router: first call of Router.route, stamped by a wrapper in `--router-child`;
baseline: first non-empty fetch) to the append time of the last output message. The
run is over when the events counted on the outputs (elements of JSON arrays on the
typed topics, messages on the dead-letter topic) add up to the number of input
events; the counts are also checked per type and against the invalid events made.
See README.md for why (the worker's /health "ready" can come late), and the figures.

The code: workload.py (the input), outputs.py (topics, counting the outputs),
processors.py (one run of a processor), baseline.py (the plain loop), stamp.py; what
the benchmarks share is in bench/common.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import ROOT
from bench.common.kafka import bench_settings, broker_pid, produce_shape
from bench.common.results import Session, cpu_text, print_run, render_table, write_results
from bench.router.baseline import baseline_main
from bench.router.outputs import create_topics
from bench.router.processors import RunResult, router_child, run_baseline, run_router
from bench.router.workload import batched_messages, make_workload, single_messages
from streams.config.topics import TopicNames

TABLE_HEAD = (
    f"{'shape':<8} {'system':<24} {'msgs in':>8} {'elapsed s':>10} {'events/s':>10} "
    f"{'rdy>in s':>8} {'in>out s':>8} {'msgs out':>9} {'dead':>5}  cpu s"
)


def table_row(r: RunResult) -> str:
    """One run as a line of the results table (under TABLE_HEAD)."""
    ready = "" if r.ready_to_first_input_s is None else f"{r.ready_to_first_input_s:.2f}"
    return (
        f"{r.shape:<8} {r.system:<24} {r.input_messages:>8} {r.elapsed_s:>10.2f} "
        f"{r.events_per_s:>10.0f} {ready:>8} {r.first_input_to_first_output_s:>8.2f} "
        f"{r.typed_messages:>9} {r.dead_letters:>5}  {cpu_text(r.cpu_s)}"
    )


def ratios(results: list[RunResult], baseline: str) -> dict[str, float]:
    """Per shape: router events/s divided by `baseline` events/s."""
    out: dict[str, float] = {}
    for shape in {r.shape for r in results}:
        router = [r for r in results if r.shape == shape and r.system == "router"]
        base = [r for r in results if r.shape == shape and r.system == baseline]
        if router and base:
            out[shape] = round(router[0].events_per_s / base[0].events_per_s, 2)
    return out


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run every scenario; answer the results document."""
    settings = bench_settings(args.partitions)
    session = Session()
    t0 = time.monotonic()
    work = make_workload(args.events)
    shapes = {
        "single": single_messages(work),
        "batch": batched_messages(work, args.batch),
    }
    print(
        f"workload: {work.total} events ({work.invalid} invalid), "
        f"{len(shapes['single'])} single / {len(shapes['batch'])} batch messages, "
        f"made in {time.monotonic() - t0:.1f}s",
        flush=True,
    )
    run_id = uuid.uuid4().hex[:8]
    broker = broker_pid()
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    results: list[RunResult] = []
    inputs: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-router-") as tmp_name:
        tmp = Path(tmp_name)
        for shape in args.shapes.split(","):
            messages = shapes[shape]
            prefix = f"bench{run_id}-{shape}."
            names = TopicNames(prefix)
            specs = names.specs(settings.partitions)
            await create_topics(settings, [s.name for s in specs])
            inputs[shape] = await produce_shape(settings, shape, names.ingest, messages)
            for system in systems:
                if system == "router":
                    result = await run_router(
                        settings, shape, prefix, work, len(messages), tmp, broker, args.full_worker
                    )
                else:
                    validator = system.removeprefix("baseline-")
                    result = await run_baseline(
                        settings,
                        shape,
                        names.ingest,
                        f"bench{run_id}-{shape}-{validator}.",
                        validator,
                        work,
                        len(messages),
                        tmp,
                        broker,
                    )
                results.append(result)
                print_run(system, 24, result)
    session.end()
    print()
    print(render_table(TABLE_HEAD, [table_row(r) for r in results]))
    setup = {
        "invalid": work.invalid,
        "valid_per_type": dict(work.valid_per_type),
        "batch": args.batch,
        "partitions": settings.partitions,
        "worker": "enginestream worker (all agents)" if args.full_worker else "router agent only",
    }
    figures = {
        "ratio_router_over_baseline": ratios(results, "baseline-jsonschema"),
        "ratio_router_over_baseline_fastjsonschema": ratios(results, "baseline-fastjsonschema"),
    }
    doc = session.document(run_id, work.total, setup, inputs, results, figures)
    print(f"\nratio router/baseline (jsonschema): {doc['ratio_router_over_baseline']}")
    print(
        "ratio router/baseline (fastjsonschema): "
        f"{doc['ratio_router_over_baseline_fastjsonschema']}"
    )
    session.print_uptime()
    return doc


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.router.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--events", type=int, default=200_000, help="input events")
    parser.add_argument("--batch", type=int, default=500, help="events per batch message")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "router" / "results" / "latest.json"
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--shapes", default="single,batch", help="single,batch")
    parser.add_argument(
        "--systems",
        default="router,baseline-jsonschema,baseline-fastjsonschema",
        help="which processors to run, in order",
    )
    parser.add_argument(
        "--full-worker",
        action="store_true",
        help="run `enginestream worker` with all its agents (default: the router agent only)",
    )
    # The processors' own processes (started by processors.py through this module).
    hidden = argparse.SUPPRESS
    parser.add_argument("--router-child", action="store_true", help=hidden)
    parser.add_argument("--baseline-child", action="store_true", help=hidden)
    parser.add_argument("--bootstrap", help=hidden)
    parser.add_argument("--in-topic", help=hidden)
    parser.add_argument("--out-prefix", help=hidden)
    parser.add_argument("--validator", choices=("jsonschema", "fastjsonschema"), help=hidden)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    if args.router_child:
        router_child(args.full_worker)
        return
    if args.baseline_child:
        asyncio.run(
            baseline_main(
                args.bootstrap, args.in_topic, args.out_prefix, args.partitions, args.validator
            )
        )
        return
    write_results(args.out, asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
