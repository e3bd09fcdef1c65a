"""What the benchmarks share: machine facts, CPU accounting, broker and topic setup,
the plain loops' input reader, process launch and results writing.

* machine: where a run happened (CPU, memory, disk, Kafka version, uptime);
* cpu: CPU seconds of processes and of the whole machine over a measured window;
* kafka: settings, the pre-produced input, the group-less consumer, the broker's pid;
* baseline: the skeleton of the plain aiokafka loops (read a topic to its end);
* processes: worker and child processes started from a benchmark, and their logs;
* results: progress lines, the run's uptime and the JSON results file.
"""

from pathlib import Path

# The repository: children run from here, and ops/ and the results are found from it.
ROOT = Path(__file__).resolve().parents[2]
