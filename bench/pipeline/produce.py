"""The producer of a run, in a child process of its own (its CPU is its own): it builds
the input, says READY, waits for the parent's go on stdin, then produces as fast as
aiokafka allows (or, live, at a fixed rate) and reports START and DONE.

    python -m bench.pipeline.produce --topic T --shape batch --events N --engines E ...
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time

from aiokafka import AIOKafkaProducer

from bench.common.baseline import mark
from bench.common.kafka import MAX_BYTES, InputMessage, bench_settings
from bench.pipeline.workload import live_messages, make_input, memory_input
from streams.kafka.admin import client_options
from streams.kafka.fleet import Fleet

TICK_S = 0.1  # live mode: one burst of rate * TICK_S events per tick


def producer_for(partitions: int) -> AIOKafkaProducer:
    """An acks=all producer (KAFKA_BOOTSTRAP_SERVERS) that takes whole batch messages."""
    return AIOKafkaProducer(
        **client_options(bench_settings(partitions)),
        acks="all",
        linger_ms=5,
        max_batch_size=1024 * 1024,
        max_request_size=MAX_BYTES,
    )


async def send_all(producer: AIOKafkaProducer, topic: str, messages: list[InputMessage]) -> None:
    """Send `messages` to their partitions and wait until every one is acknowledged."""
    futures = []
    for msg in messages:
        futures.append(
            await producer.send(
                topic, msg.value, key=msg.key, partition=msg.partition, headers=list(msg.headers)
            )
        )
    await producer.flush()
    await asyncio.gather(*futures)


async def produce(args: argparse.Namespace) -> None:
    """Build the input, wait for the go, produce, report."""
    if args.shape == "memory":
        messages = memory_input(args.events, args.partitions, args.batch).messages
    elif args.shape != "live":
        made = make_input(
            args.shape, args.events, args.engines, args.span_s, args.partitions, args.batch
        )
        messages = made.messages
    producer = producer_for(args.partitions)
    await producer.start()
    try:
        mark("READY")
        await asyncio.to_thread(sys.stdin.readline)
        mark("START")
        if args.shape == "live":
            sent = await produce_live(producer, args)
        else:
            await send_all(producer, args.topic, messages)
            sent = sum(m.events for m in messages)
        mark("DONE", sent)
    finally:
        await producer.stop()


async def produce_live(producer: AIOKafkaProducer, args: argparse.Namespace) -> int:
    """Executions stamped with the wall clock, `rate` per second for `duration` s."""
    fleet = Fleet(rng=random.Random(5), engines=args.engines)
    started = time.time()
    sent = 0
    while (now := time.time()) < started + args.duration:
        due = int((now - started + TICK_S) * args.rate) - sent
        if due > 0:
            await send_all(producer, args.topic, live_messages(
                fleet, due, args.partitions, args.batch, time.time()))  # fmt: skip
            sent += due
        await asyncio.sleep(max(0.0, started + sent / args.rate - TICK_S - time.time()))
    return sent


def main(argv: list[str] | None = None) -> None:
    """Entry point (started by bench.pipeline.systems)."""
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline.produce")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--shape", required=True)
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--engines", type=int, default=1000)
    parser.add_argument("--span-s", type=float, default=2000.0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=30.0)
    asyncio.run(produce(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
