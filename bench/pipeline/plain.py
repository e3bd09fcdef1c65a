"""The plain loop (the Python limit here), in a child process: aiokafka consumer ->
orjson -> fastjsonschema validation -> a dict of [count, latency sum, min, max] per
(engine, 60 s window) per input partition -> the valid executions appended to a JSONL
file with an fsync per fetched batch -> final windows produced with aiokafka once the
partition's watermark (highest event time - 5 s, the worker's lateness) passes their
end. It runs until the parent stops it; the parent judges when it is done."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from bench.common.baseline import mark
from bench.common.kafka import bench_settings, plain_consumer
from bench.pipeline.job import EXECUTION, LATENESS_S, WINDOW_S, Checker, JsonlFile, window_record
from streams.kafka.admin import client_options

Open = dict[int, dict[str, list[float]]]  # window start -> engine -> [count, sum, min, max]


def close_windows(windows: Open, watermark: float) -> list[dict[str, Any]]:
    """Remove and render the windows whose end the watermark has reached."""
    out = []
    for start in sorted(s for s in windows if s + WINDOW_S <= watermark):
        for engine, acc in windows.pop(start).items():
            out.append(window_record(engine, start, acc))
    return out


async def plain_main(topic: str, out_topic: str, partitions: int, path: Path) -> None:
    """Read `topic` from the beginning forever; see the module docstring."""
    settings = bench_settings(partitions)
    consumer = plain_consumer(settings)
    producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=5)
    checker, sink = Checker(), JsonlFile(path)
    windows: dict[int, Open] = defaultdict(dict)
    highest: dict[int, float] = defaultdict(lambda: -math.inf)
    loads, dumps, floor = orjson.loads, orjson.dumps, math.floor
    late = 0
    await consumer.start()
    await producer.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    mark("READY")
    started = False
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            if batch and not started:
                started = True
                mark("FIRST")
            finals: list[dict[str, Any]] = []
            for tp, records in batch.items():
                p, open_ = tp.partition, windows[tp.partition]
                high = highest[p]
                for rec in records:
                    value = loads(rec.value)
                    single = not isinstance(value, list)
                    for doc in (value,) if single else value:
                        if checker.valid_type(doc, rec.headers) != EXECUTION:
                            continue
                        sink.add(rec.value if single else dumps(doc))
                        t = doc["timestamp"]
                        start = floor(t / WINDOW_S) * WINDOW_S
                        if start + WINDOW_S <= high - LATENESS_S:
                            late += 1
                            continue
                        lat = doc["metrics"]["latency_ms"]
                        engines = open_.get(start)
                        if engines is None:
                            engines = open_[start] = {}
                        acc = engines.get(doc["engine_id"])
                        if acc is None:
                            engines[doc["engine_id"]] = [1, lat, lat, lat]
                        else:
                            acc[0] += 1
                            acc[1] += lat
                            if lat < acc[2]:
                                acc[2] = lat
                            if lat > acc[3]:
                                acc[3] = lat
                        if t > high:
                            high = t
                if high > highest[p]:
                    highest[p] = high
                    finals.extend(close_windows(open_, high - LATENESS_S))
            sink.flush()
            for record in finals:
                await producer.send(out_topic, dumps(record), key=record["engine_id"].encode())
            if finals:
                await producer.flush()
    finally:
        print(f"refused {checker.refused}, late {late}", flush=True)
        sink.close()
        await producer.stop()
        await consumer.stop()
