"""End-to-end pipeline benchmark: the whole worker (every agent on, events in through
`engine.ingest`) against Quix Streams doing the same job, Quix windows alone and a plain
aiokafka loop, on the same events in the same run. See README.md.

    .venv/bin/python -m bench.pipeline.run [--events 200000] [--repeat 3]
        [--systems worker,quix-full,quix-windows,plain] [--shapes single,batch]
        [--engines 20,1000] [--scenarios throughput,mixed,history,latency,memory]
        [--out bench/pipeline/results/latest.json]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.common import ROOT
from bench.common.kafka import bench_settings, broker_pid
from bench.common.results import Session, write_results
from bench.pipeline.scenarios import Series
from bench.windows.topics import delete_topics

RESULTS = ROOT / "bench" / "pipeline" / "results"


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run every scenario asked for; answer the results document."""
    settings = bench_settings(args.partitions)
    session = Session()
    run_id = uuid.uuid4().hex[:8]
    print(f"run {run_id}: {args.events} events, scenarios {args.scenarios}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        series = Series(args, settings, run_id, Path(tmp), broker_pid())
        try:
            await series.run_all()
        finally:
            deleted = await delete_topics(settings, run_id)
            print(f"deleted {deleted} leftover topics of run {run_id}", flush=True)
    session.end()
    doc = session.document(run_id, args.events, series.setup(), series.inputs,
                           series.results, series.figures())  # fmt: skip
    series.print_tables()
    session.print_uptime()
    return doc


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring and README.md)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline.run", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--systems", default="worker,quix-full,quix-windows,plain")
    parser.add_argument("--shapes", default="single,batch")
    parser.add_argument("--engines", default="20,1000")
    parser.add_argument("--scenarios", default="throughput,mixed,history")
    parser.add_argument("--batch", type=int, default=500, help="events per batch message")
    parser.add_argument("--span-s", type=float, default=2000.0, help="seconds of event time")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--history-records", type=int, default=1_000_000)
    parser.add_argument("--memory-windows", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=None,
                        help="latency: events/s (default: half the worker's batch median)")
    parser.add_argument("--latency-window-s", type=int, default=10)
    parser.add_argument("--latency-duration-s", type=float, default=45.0)
    parser.add_argument("--deadline-s", type=float, default=900.0, help="per run")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write a py-spy profile of the worker of each run to this directory")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    hidden = argparse.SUPPRESS  # a child of this module: Quix or the plain loop
    for flag in ("--child", "--topic", "--out-topic", "--path", "--group", "--state-dir",
                 "--batched"):  # fmt: skip
        parser.add_argument(flag, help=hidden)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    if args.child == "plain":
        from bench.pipeline.plain import plain_main

        asyncio.run(plain_main(args.topic, args.out_topic, args.partitions, Path(args.path)))
        return
    if args.child in ("quix-full", "quix-windows"):
        import os

        from bench.pipeline.quixjob import quix_main

        quix_main(os.environ["KAFKA_BOOTSTRAP_SERVERS"], args.topic, args.out_topic,
                  args.group, args.state_dir, args.batched == "yes",
                  args.child == "quix-full", Path(args.path))  # fmt: skip
        return
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    write_results(args.out, asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
