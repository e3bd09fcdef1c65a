"""Where the worker's time goes: a py-spy profile (`--format raw`, collapsed stacks, as
bench.windows.run --profile writes it) summed into a few categories.

    .venv/bin/python -m bench.windows.profile_summary PROFILE.txt [--top 25]

How a sample is charged to a category: bench.common.profile (a json decode called from
the window agent counts as the agent's, and the event loop's own frames count as
"event loop" only when nothing above them matched).
"""

from __future__ import annotations

from bench.common.profile import Rules, summary_main

# (category, substrings of a frame "function (file:line)"), tried in this order.
RULES: Rules = (
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


def main(argv: list[str] | None = None) -> None:
    """Print the summary."""
    summary_main("python -m bench.windows.profile_summary", RULES, argv)


if __name__ == "__main__":
    main()
