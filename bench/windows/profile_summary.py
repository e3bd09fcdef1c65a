"""Where the worker's time goes: a py-spy profile (`--format raw`, collapsed stacks, as
bench.windows.run --profile writes it) summed into a few categories.

    .venv/bin/python -m bench.windows.profile_summary PROFILE.txt [--top 25]

Each sample is charged to one category: the one of the innermost frame that matches a
rule (rules are tried in order for each frame, from the leaf towards the root), so a
json decode called from the window agent counts as the agent's, and the event loop's
own frames count as "event loop" only when nothing above them matched. Samples of
idle threads are not in py-spy's output (it records only running ones).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

# (category, substrings of a frame "function (file:line)"), tried in this order.
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging (records built for debug/info)", ("logging/__init__.py",)),
    ("window logic (streams.domain.windows, aggregates, sketch)",
     ("streams/domain/windows.py", "streams/domain/aggregates.py", "streams/domain/sketch.py")),
    ("window agent: apply loop, json, changelog writes",
     ("streams/agents/window_agent.py", "streams/runtime/bulk.py")),
    ("changelog + output producing (faust tables/producer, aiokafka producer)",
     ("faust/tables/", "faust/transport/producer.py", "aiokafka/producer/",
      "faust/topics.py", "faust/channels.py:3", "FutureMessage", "publish_message",
      "faust/transport/drivers/aiokafka.py:5", "faust/transport/drivers/aiokafka.py:6")),
    ("stream machinery (faust Stream, take_events, Event, acks, sensors)",
     ("faust/streams.py", "faust/_cython/streams", "faust/events.py", "faust/sensors/",
      "faust/agents/", "faust/channels.py", "mode/utils/queues.py", "_weakrefset.py",
      "faust/types/tuples.py")),
    ("consumer drain + conductor (per-message wait_first, on_message, decode)",
     ("faust/transport/consumer.py", "faust/transport/conductor.py",
      "faust/transport/_cython/conductor", "faust/serializers/",
      "faust/app/base.py", "mode/services.py", "mode/utils/locks.py")),
    ("aiokafka fetch + record decode", ("aiokafka/consumer/", "aiokafka/record/",
                                        "aiokafka/conn.py", "aiokafka/client.py",
                                        "faust/transport/drivers/aiokafka.py")),
    ("consumer thread / method queue (mode.threads)", ("mode/threads.py",)),
    ("web views", ("faust/web/", "aiohttp/")),
    ("event loop (asyncio)", ("asyncio/", "selectors.py")),
)


def categorize(frames: list[str]) -> str:
    """The category of one sample (frames root first)."""
    for frame in reversed(frames):
        for category, needles in RULES:
            if any(n in frame for n in needles):
                return category
    return "other"


def summarize(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    """(samples, samples per category, samples per leaf frame) of a raw profile."""
    per_category: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        per_category[categorize(frames)] += n
        leaves[frames[-1]] += n
    return total, per_category, leaves


def main(argv: list[str] | None = None) -> None:
    """Print the summary."""
    parser = argparse.ArgumentParser(prog="python -m bench.windows.profile_summary")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    total, per_category, leaves = summarize(args.profile)
    print(f"{total} samples (running threads only)")
    for category, n in per_category.most_common():
        print(f"{100 * n / total:5.1f}%  {category}")
    print(f"\ntop {args.top} leaf frames:")
    for frame, n in leaves.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
