"""Window-agent throughput: the enginestream worker against a plain aiokafka loop and
Quix Streams, on a real broker, the same pre-produced input for every system.

    .venv/bin/python -m bench.windows.run [--events 200000] [--engines 1000]
        [--batch 500] [--shapes single,batch]
        [--systems worker,worker-faust-stream,baseline-dict,baseline-stats,quix]
        [--profile] [--with-sinks] [--keep-topics]
        [--out bench/windows/results/latest.json]

Input: `--events` engine_execution events of `--engines` engines, historical event
times (from 2022-12-02, evenly spread over `--span-s` seconds, each up to 2 s early:
out of order within the worker's 5 s lateness), written straight to a fresh prefixed
`engine.executions` (4 partitions, each event on its engine's partition as Kafka's
default partitioner puts it), in two shapes: one event per message (keyed by
engine_id) and JSON arrays of up to `--batch` events of one partition.

Systems, each a process of its own, one after the other on the same topic:

* `worker`: `enginestream worker` as shipped (launched by tests/worker_process.py), its
  window agent keeping the 60 s windows in its changelog-backed table (the JSONL sink
  of the same topic off unless `--with-sinks`: see README.md);
* `worker-faust-stream`: the same worker with the window agent consuming the way it
  did before streams.runtime.bulk (faust's consumer with a `wait_first` per message, a
  faust agent with `take_events(200)`, the root logger at DEBUG): the "before";
* `baseline-dict`: aiokafka consumer -> orjson.loads -> a plain dict per
  (engine, 60 s window) of [count, latency sum, latency min, latency max];
* `baseline-stats`: the same loop with streams.domain.aggregates.ExecutionStats per window
  (what the worker keeps: exact sums, means, the latency sketch);
* `quix`: Quix Streams (`pip install -e '.[bench]'`):
  `app.dataframe(topic).tumbling_window(60_000, grace_ms=5_000).agg(count, sum, min,
  max of latency).final()`, event time from the `timestamp` field (seconds -> ms) by
  the topic's timestamp extractor; for the batch shape the arrays are expanded,
  `set_timestamp` gives each event its own time and `group_by("engine_id")` keys the
  windows by engine (Quix windows by message key).

Measured (the same for all): from the moment the system had its first input message
in hand (`first`) to the moment it had applied the last input event to its windows
(`done`): events / (done - first). For the worker, `first` and `done` are the wall
times its window agent records before its first batch and after the batch holding the
last event was applied and its changelog and output records queued to the producer
(GET /windows/stats); the baselines and Quix print them. Also shown: `ready -> first`
(worker: /health first said ready, partitions assigned and tables recovered; baseline:
consumer positioned; Quix: first partition assigned) and, for the systems that commit
offsets to a consumer group (worker, Quix), `done -> committed`: until the group's
committed offsets reached the end of the input (their commit intervals are 2.8 s and
5 s; Faust flushes the producer before it commits).

The code: workload.py (the input), worker.py (the worker's runs), children.py (the
runs of the others), baseline.py (the plain loops), quix.py (Quix Streams),
topics.py (offsets, commits, clean-up), results.py (result, table, ratios); what the
benchmarks share is in bench/common.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.common import ROOT
from bench.common.kafka import bench_settings, broker_pid, produce_shape
from bench.common.results import Session, print_run, render_table, write_results
from bench.windows.baseline import baseline_main
from bench.windows.children import run_child
from bench.windows.quix import quix_main
from bench.windows.results import TABLE_HEAD, RunResult, medians, ratios, table_row
from bench.windows.topics import delete_topics, end_offsets
from bench.windows.worker import faust_stream_child, run_worker
from bench.windows.workload import Stage, batched_messages, make_workload, single_messages
from streams.config.topics import TopicNames
from streams.kafka.admin import ensure_topics

RESULTS = ROOT / "bench" / "windows" / "results"


async def run_system(args: argparse.Namespace, stage: Stage, system: str, rep: int) -> RunResult:
    """One run of one system (repetition `rep`: its own consumer group)."""
    if system in ("worker", "worker-faust-stream"):
        profile = None
        if args.profile:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            name = f"{args.out.stem}-profile-{system}-{stage.shape}-{rep}.txt"
            profile = args.out.parent / name
        result = await run_worker(stage, profile, args.with_sinks, system, rep)
    else:
        result = await run_child(stage, system, rep)
    result.repeat = rep
    return result


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run every scenario; answer the results document."""
    settings = bench_settings(args.partitions)
    session = Session()
    work = make_workload(args.events, args.engines, args.span_s, args.partitions)
    shapes = {"single": single_messages(work), "batch": batched_messages(work, args.batch)}
    run_id = uuid.uuid4().hex[:8]
    broker = broker_pid()
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    results: list[RunResult] = []
    inputs: dict[str, dict[str, float]] = {}
    print(
        f"workload: {work.total} events of {work.engines} engines over {work.span_s:.0f}s "
        f"of event time; run {run_id}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-windows-") as tmp_name:
        tmp = Path(tmp_name)
        for shape in args.shapes.split(","):
            messages = shapes[shape]
            prefix = f"benchw{run_id}-{shape}."
            await ensure_topics(bench_settings(args.partitions, prefix))
            await asyncio.sleep(1.0)  # let the new partitions' leaders settle
            topic = TopicNames(prefix).typed["engine_execution"]
            inputs[shape] = await produce_shape(settings, shape, topic, messages)
            ends = await end_offsets(settings, topic)
            stage = Stage(settings, shape, prefix, topic, work, len(messages), ends, tmp, broker)
            for rep in range(args.repeat):
                for system in systems:
                    result = await run_system(args, stage, system, rep)
                    results.append(result)
                    print_run(system, 19, result)
    session.end()
    if not args.keep_topics:
        print(f"deleted {await delete_topics(settings, run_id)} topics of run {run_id}")
    print()
    print(render_table(TABLE_HEAD, [table_row(r) for r in results]))
    setup = {
        "engines": work.engines,
        "span_s": work.span_s,
        "batch": args.batch,
        "partitions": args.partitions,
        "repeat": args.repeat,
        "profiled": bool(args.profile),
        "worker_sinks": "all" if args.with_sinks else "events.jsonl sink off",
    }
    figures = {
        "median_events_per_s": {f"{k[0]}/{k[1]}": v for k, v in medians(results).items()},
        "ratios": ratios(results),
    }
    doc = session.document(run_id, work.total, setup, inputs, results, figures)
    print(f"\nmedian events/s: {doc['median_events_per_s']}")
    print(f"ratios: {doc['ratios']}")
    session.print_uptime()
    return doc


# Flags that only switch something on: (flag, help).
SWITCHES = (
    ("--profile", "py-spy the worker (slows it a little)"),
    ("--with-sinks", "keep the worker's events.jsonl sink (it reads the same topic)"),
    ("--keep-topics", "do not delete the run's topics at the end"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.windows.run", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--engines", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500, help="events per batch message")
    parser.add_argument("--span-s", type=float, default=2000.0, help="seconds of event time")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each system (ratios use medians)"
    )
    parser.add_argument("--shapes", default="single,batch")
    parser.add_argument(
        "--systems",
        default="worker,worker-faust-stream,baseline-dict,baseline-stats,quix",
        help="in order; worker-faust-stream is the worker with faust's per-message path",
    )
    for flag, text in SWITCHES:
        parser.add_argument(flag, action="store_true", help=text)
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    # A child process of this module: the faust-stream worker, a baseline or Quix.
    hidden = argparse.SUPPRESS
    parser.add_argument("--worker-child", help=hidden)
    parser.add_argument("--child", help=hidden)
    for flag in ("--bootstrap", "--topic", "--group", "--state-dir", "--shape"):
        parser.add_argument(flag, help=hidden)
    parser.add_argument("--total", type=int, help=hidden)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    if args.worker_child == "faust-stream":
        faust_stream_child()
        return
    if args.child in ("baseline-dict", "baseline-stats"):
        asyncio.run(
            baseline_main(
                args.bootstrap, args.topic, args.partitions, args.total,
                args.child == "baseline-stats",
            )
        )  # fmt: skip
        return
    if args.child == "quix":
        quix_main(args.bootstrap, args.topic, args.group, args.state_dir, args.total, args.shape)
        return
    write_results(args.out, asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
