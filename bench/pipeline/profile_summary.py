"""Where the whole worker's time goes: a py-spy profile of a pipeline run (`--profile`)
summed by stage.

    .venv/bin/python -m bench.pipeline.profile_summary PROFILE.txt [--top 25]

How a sample is charged to a stage: bench.common.profile (the innermost frame that
matches a rule, so a JSON decode called from the router counts as routing, and a socket
write under the Kafka client counts as Kafka). "other" is what no stage claims: the
event loop's own work between callbacks, mostly.
"""

from __future__ import annotations

from bench.common.profile import Rules, summary_main

RULES: Rules = (
    ("validation (jsonschema_rs verdict)", ("streams/domain/validation.py",)),
    ("routing: decode, checks, encode, pack (router)",
     ("streams/domain/router.py", "streams/domain/limits.py", "streams/kafka/packing.py",
      "streams/agents/router_agent.py", "streams/domain/avro_codec.py")),
    ("windows: logic (windows, aggregates, sketch)",
     ("streams/domain/windows.py", "streams/domain/aggregates.py",
      "streams/domain/sketch.py")),
    ("windows: agent (decode, changelog, emit)", ("streams/agents/window_agent.py",)),
    ("file writes (append, fsync, checkpoint)",
     ("streams/durable/filesink.py", "streams/durable/atomic.py")),
    ("sinks: lines and ids", ("streams/agents/sink_agent.py", "streams/config/channels.py")),
    ("other agents (training, jobs, sessions, engine status)",
     ("streams/agents/training_agent.py", "streams/agents/keyed_state.py",
      "streams/agents/jobs_agent.py", "streams/agents/sessions_agent.py",
      "streams/agents/engine_status_agent.py")),
    ("exactly-once bookkeeping (ledgers, outputs, table writes)",
     ("streams/durable/exactly_once.py", "faust/tables/")),
    ("producing (faust + aiokafka producer)",
     ("faust/transport/producer.py", "aiokafka/producer/", "Producer.send")),
    ("consuming (fetch, record decode, in-order delivery, acks, commits)",
     ("streams/runtime/", "aiokafka/consumer/", "aiokafka/record/", "faust/transport/",
      "faust/types/tuples.py", "mode/threads.py")),
    ("Kafka connections (aiokafka client, sockets)", ("aiokafka/",)),
    ("file writes (thread pool)", ("concurrent/futures/thread.py",)),
    ("web views", ("faust/web/", "aiohttp/")),
)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Print the summary."""
    summary_main("python -m bench.pipeline.profile_summary", RULES, argv)


if __name__ == "__main__":
    main()
