"""The series of runs one invocation makes: every scenario, engine count, shape,
repetition and system, each run on topics of its own that are deleted after it."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.common.kafka import bench_settings
from bench.common.results import render_table
from bench.pipeline.history import commit_at_ends, fill_outputs
from bench.pipeline.latency import run_latency
from bench.pipeline.results import TABLE_HEAD, RunResult, goals, median_rows, medians, table_row
from bench.pipeline.runs import Plan, run_one
from bench.pipeline.workload import Input, make_input, memory_input
from bench.windows.topics import delete_topics, end_offsets
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.admin import client_options, ensure_topics


def csv(text: str) -> list[str]:
    """The items of a comma-separated option."""
    return [part.strip() for part in text.split(",") if part.strip()]


class Series:
    """Runs the scenarios of one invocation and keeps their results."""

    def __init__(
        self, args: argparse.Namespace, settings: Settings, run_id: str, tmp: Path,
        broker: int | None,
    ) -> None:  # fmt: skip
        self.args, self.settings, self.run_id, self.tmp, self.broker = (
            args, settings, run_id, tmp, broker)  # fmt: skip
        self.results: list[RunResult] = []
        self.inputs: dict[str, dict[str, Any]] = {}
        self.latency: dict[str, Any] | None = None
        self.history: dict[str, Any] = {}
        self.counter = 0
        self.engines = [int(e) for e in csv(args.engines)]

    async def run_all(self) -> None:
        """Every scenario asked for, in a fixed order (latency uses the batch median)."""
        args, scenarios = self.args, csv(self.args.scenarios)
        systems = csv(args.systems)
        if "throughput" in scenarios:
            for engines in self.engines:
                for shape in csv(args.shapes):
                    await self.repeated("throughput", shape, engines, systems)
        if "mixed" in scenarios:
            await self.repeated("mixed", "mixed", self.engines[0], systems)
        if "history" in scenarios:  # a restart on 1M records: its group read them before
            await self.repeated("history", "batch", self.engines[-1], ["worker"])
        if "history-new-group" in scenarios:  # a new group: its sinks read all of them
            await self.repeated("history-new-group", "batch", self.engines[-1], ["worker"])
        if "memory" in scenarios:
            await self.repeated("memory", "memory", args.memory_windows, ["worker"], 1)
        if "latency" in scenarios:
            await self.run_latency()

    def build(self, shape: str, engines: int) -> tuple[Input, list[str]]:
        """The input's counts (its messages dropped: the producer builds them again,
        from the same seed) and the producer's arguments."""
        a = self.args
        if shape == "memory":
            item, events = memory_input(engines, a.partitions, a.batch), engines
        else:
            item = make_input(shape, a.events, engines, a.span_s, a.partitions, a.batch)
            events = a.events
        producer = ["--shape", shape, "--events", str(events), "--engines", str(engines),
                    "--span-s", str(a.span_s), "--partitions", str(a.partitions),
                    "--batch", str(a.batch)]  # fmt: skip
        self.inputs[f"{shape}/e{engines}"] = {
            "messages": len(item.messages), "events": item.events,
            "executions": item.executions, "lines": item.lines,
        }  # fmt: skip
        return item, producer

    async def repeated(
        self, scenario: str, shape: str, engines: int, systems: list[str], repeat: int = 0
    ) -> None:
        """`repeat` (default --repeat) rounds of every system on one input."""
        item, producer = self.build(shape, engines)
        n_messages = len(item.messages)
        item = dataclasses.replace(item, messages=[])
        print(f"{scenario} {shape} {engines} engines: {n_messages} messages", flush=True)
        for rep in range(repeat or self.args.repeat):
            for system in systems:
                result = await self.one(scenario, system, item, engines, producer, rep)
                result.input_messages = n_messages
                self.results.append(result)
                print("  " + table_row(result), flush=True)

    def plan(self, scenario: str, system: str, item: Input, engines: int,
             producer: list[str], rep: int) -> Plan:  # fmt: skip
        """A run's plan, with a tag and topic prefix of its own."""
        self.counter += 1
        tag = f"{self.run_id}r{self.counter:03d}"
        prefix = f"bp{tag}."
        return Plan(
            self.settings, scenario, system, tag, prefix, item, engines,
            ["--topic", TopicNames(prefix).ingest, *producer], self.tmp, self.broker,
            deadline_s=self.args.deadline_s, done_by_stats=scenario == "memory", repeat=rep,
            profile_dir=self.args.profile,
        )  # fmt: skip

    async def create_topics(self, plan: Plan) -> None:
        """The worker's every topic, or the loop's and Quix's input and output."""
        parts = self.settings.partitions
        if plan.system == "worker":
            await ensure_topics(bench_settings(parts, plan.prefix))
        else:
            # Kept forever: Quix copies the input's retention to its repartition topic,
            # whose messages carry the events' 2022 times; with the broker's default
            # 7 days, its retention check deleted them mid-run and Quix never finished.
            admin = AIOKafkaAdminClient(**client_options(self.settings))
            await admin.start()
            try:
                await admin.create_topics([
                    NewTopic(name, parts, 1, topic_configs={"retention.ms": "-1"})
                    for name in (plan.names.ingest, plan.out_topic)
                ])  # fmt: skip
            finally:
                await admin.close()

    async def one(self, scenario: str, system: str, item: Input, engines: int,
                  producer: list[str], rep: int) -> RunResult:  # fmt: skip
        """One run on fresh topics, deleted after it even if it failed."""
        plan = self.plan(scenario, system, item, engines, producer, rep)
        try:
            await self.create_topics(plan)
            if scenario.startswith("history"):
                seconds = await fill_outputs(self.settings, plan.names, self.args.history_records)
                self.history.setdefault("fill_s", []).append(round(seconds, 1))
                plan.watch_since = await end_offsets(self.settings, plan.out_topic)
                if scenario == "history":  # a restart: the group has read them before
                    outputs = [plan.names.metrics_windows, plan.names.dead_letter]
                    await commit_at_ends(self.settings, f"bp-{plan.tag}", outputs)
            return await run_one(plan)
        finally:
            await delete_topics(self.settings, plan.tag)

    async def run_latency(self) -> None:
        """Live traffic at --rate (default half the worker's batch median)."""
        a = self.args
        rate = a.rate
        if rate is None:
            rates = medians(self.results)
            best = rates.get(f"throughput/batch/e{self.engines[-1]}/worker")
            rate = best / 2 if best else 2000.0
        size = a.latency_window_s
        item = Input("live", [], 0, 0, 0)
        producer = ["--shape", "live", "--engines", "1000", "--rate", f"{rate:.0f}",
                    "--duration", str(a.latency_duration_s), "--partitions", str(a.partitions),
                    "--batch", str(a.batch)]  # fmt: skip
        plan = self.plan("latency", "worker", item, 1000, producer, 0)
        plan.worker_env = {"ENGINESTREAM_WINDOW_SIZES": str(size)}
        try:
            await self.create_topics(plan)
            self.latency = await run_latency(plan, size, rate, a.latency_duration_s)
        finally:
            await delete_topics(self.settings, plan.tag)
        print(f"latency: {self.latency}", flush=True)

    def setup(self) -> dict[str, Any]:
        """The options of the series, for the results file."""
        a = self.args
        return {"scenarios": a.scenarios, "systems": a.systems, "shapes": a.shapes,
                "engines": a.engines, "repeat": a.repeat, "batch": a.batch,
                "span_s": a.span_s, "partitions": a.partitions,
                "history_records": a.history_records,
                "memory_windows": a.memory_windows}  # fmt: skip

    def figures(self) -> dict[str, Any]:
        """Medians, goals per engine count, and the history, memory and latency cases."""
        return {
            "median_events_per_s": medians(self.results),
            "goals": {f"e{e}": goals(self.results, e, max(self.engines)) for e in self.engines},
            "history": {**self.history, **{f"{name}_start_to_first_s": [
                r.start_to_first_s for r in self.results if r.scenario == name]
                for name in ("history", "history-new-group")}},
            "memory_peak_rss_mb": [r.peak_rss_mb for r in self.results if r.scenario == "memory"],
            "latency": self.latency,
        }  # fmt: skip

    def print_tables(self) -> None:
        """Every run, then the medians and the goals."""
        print()
        print(render_table(TABLE_HEAD, [table_row(r) for r in self.results]))
        print("\nmedians (events/s):")
        print("\n".join(median_rows(self.results)))
        figures = self.figures()
        print(f"\ngoals: {figures['goals']}")
        print(f"history: {figures['history']}\nmemory peak RSS MB: "
              f"{figures['memory_peak_rss_mb']}\nlatency: {figures['latency']}")  # fmt: skip
