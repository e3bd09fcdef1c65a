#!/usr/bin/env bash
# Local three-node Apache Kafka cluster (KRaft) on loopback, from the same jars as the
# single broker (ops/kafka/kafka.sh fetches them): each node is broker and controller,
# the three controllers one quorum; topics get three replicas, two of them in sync.
#
#   ops/kafka/cluster.sh start         fetch, format each node once, start, wait for all three
#   ops/kafka/cluster.sh stop          stop every node (SIGTERM, then SIGKILL)
#   ops/kafka/cluster.sh status        one line per node; fails unless all three answer
#   ops/kafka/cluster.sh start-node N  start node N (1-3) again, wait until it serves
#   ops/kafka/cluster.sh kill-node N   SIGKILL node N, as a crash would
#   ops/kafka/cluster.sh stop-node N   stop node N cleanly (SIGTERM)
#
# Settings (environment): KAFKA_CLUSTER_PORTS (19092,19094,19096: the client ports of
# nodes 1-3), KAFKA_CLUSTER_CONTROLLER_PORTS (19093,19095,19097),
# KAFKA_CLUSTER_DIR (<project>/.local/kafka-cluster; node N keeps its data, log and pid
# file in node-N), KAFKA_HOME_DIR (where the jars are, as for kafka.sh),
# KAFKA_START_TIMEOUT (120 seconds), KAFKA_HEAP (512m per node).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${KAFKA_CLUSTER_DIR:-$root/.local/kafka-cluster}"
lib="${KAFKA_HOME_DIR:-$root/.local/kafka}/lib"
timeout="${KAFKA_START_TIMEOUT:-120}"
heap="${KAFKA_HEAP:-512m}"
IFS=, read -r -a ports <<<"${KAFKA_CLUSTER_PORTS:-19092,19094,19096}"
IFS=, read -r -a controller_ports <<<"${KAFKA_CLUSTER_CONTROLLER_PORTS:-19093,19095,19097}"
nodes=(1 2 3)

say() { echo "kafka-cluster: $*" >&2; }
die() { echo "kafka-cluster: error: $*" >&2; exit 1; }

((${#ports[@]} == 3)) || die "KAFKA_CLUSTER_PORTS needs three ports separated by commas, got '${KAFKA_CLUSTER_PORTS:-}'"
((${#controller_ports[@]} == 3)) || die "KAFKA_CLUSTER_CONTROLLER_PORTS needs three ports separated by commas, got '${KAFKA_CLUSTER_CONTROLLER_PORTS:-}'"

bootstrap="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
voters="1@127.0.0.1:${controller_ports[0]},2@127.0.0.1:${controller_ports[1]},3@127.0.0.1:${controller_ports[2]}"

node_dir() { echo "$dir/node-$1"; }
port_of() { echo "${ports[$1 - 1]}"; }
props_of() { echo "$(node_dir "$1")/server.properties"; }
pidfile_of() { echo "$(node_dir "$1")/kafka.pid"; }
log_of() { echo "$(node_dir "$1")/broker.log"; }

check_node() {  # check_node N: N names a node, or a one-line error
  [[ ${1:-} =~ ^[123]$ ]] || die "name the node: 1, 2 or 3 (got '${1:-}')"
}

port_open() {  # port_open PORT -> 0 when something accepts connections there
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(0.5)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
}

serves() {  # serves N: node N answers a metadata request that lists all three brokers
  local answer
  answer="$(python3 "$here/probe.py" 127.0.0.1 "$(port_of "$1")" 2 2>/dev/null)" || return 1
  [[ $answer == "ok 3 "* ]]
}

node_pid() {  # node_pid N: the pid of node N, from its pid file or the process table
  local pidfile pid=""
  pidfile="$(pidfile_of "$1")"
  if [[ -f $pidfile ]]; then
    pid="$(cat "$pidfile")"
    if ! kill -0 "$pid" 2>/dev/null; then rm -f "$pidfile"; pid=""; fi
  fi
  if [[ -z $pid ]]; then
    pid="$(pgrep -f -- "kafka.Kafka $(props_of "$1")\$" | head -n 1 || true)"
    [[ -n $pid ]] && echo "$pid" >"$pidfile"
  fi
  echo "$pid"
}

configure() {  # configure: every node's properties, and its storage formatted once
  local cluster_id n data formats=()
  mkdir -p "$dir"
  # One cluster id for the three nodes, kept so that a node formatted later joins them.
  if [[ ! -f $dir/cluster.id ]]; then
    python3 -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))' \
      >"$dir/cluster.id"
  fi
  cluster_id="$(cat "$dir/cluster.id")"
  for n in "${nodes[@]}"; do
    data="$(node_dir "$n")/data"
    mkdir -p "$data"
    sed -e "s|@NODE_ID@|$n|g" -e "s|@PORT@|$(port_of "$n")|g" \
      -e "s|@CONTROLLER_PORT@|${controller_ports[$n - 1]}|g" -e "s|@VOTERS@|$voters|g" \
      -e "s|@DATA_DIR@|$data|g" "$here/cluster.properties.in" >"$(props_of "$n")"
    if [[ ! -f $data/meta.properties ]]; then
      # "--cluster-id=ID" in one word: an id may start with "-" (see kafka.sh). The three
      # at once: each is a JVM start of a few seconds.
      java -cp "$lib/*" -Dlog4j.configuration="file:$here/log4j.properties" \
        kafka.tools.StorageTool format "--cluster-id=$cluster_id" -c "$(props_of "$n")" \
        --ignore-formatted >&2 &
      formats+=("$n:$!")
    fi
  done
  for entry in "${formats[@]}"; do
    wait "${entry#*:}" || die "formatting the storage of node ${entry%%:*} in $(node_dir "${entry%%:*}")/data failed"
  done
}

launch() {  # launch N: start node N's JVM in the background (does not wait)
  local n="$1" p pid
  for p in "$(port_of "$n")" "${controller_ports[$n - 1]}"; do
    if port_open "$p"; then
      die "port $p on 127.0.0.1 is taken by another process, not node $n. Stop it, or pick free ports: KAFKA_CLUSTER_PORTS=a,b,c KAFKA_CLUSTER_CONTROLLER_PORTS=d,e,f"
    fi
  done
  say "starting node $n on 127.0.0.1:$(port_of "$n") (data in $(node_dir "$n"))"
  # setsid: the node outlives the shell that started it and gets no terminal signals.
  setsid java "-Xms256m" "-Xmx$heap" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$here/log4j.properties" \
    -cp "$lib/*" kafka.Kafka "$(props_of "$n")" >>"$(log_of "$n")" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$(pidfile_of "$n")"
}

wait_serving() {  # wait_serving N...: until each node serves, or fail naming the first that did not
  local deadline=$((SECONDS + timeout)) n pid
  for n in "$@"; do
    while ! serves "$n"; do
      pid="$(node_pid "$n")"
      if [[ -z $pid ]]; then
        tail -n 30 "$(log_of "$n")" >&2 || true
        die "node $n exited during start-up (log above, full log in $(log_of "$n"))"
      fi
      ((SECONDS < deadline)) \
        || die "node $n did not serve with all three brokers within ${timeout}s (log: $(log_of "$n"))"
      sleep 0.2
    done
  done
}

start() {
  local n started=()
  KAFKA_HOME_DIR="${lib%/lib}" "$here/kafka.sh" fetch  # the same jars as the single broker
  configure
  # All three at once: a node serves only once the quorum (two controllers) is up.
  for n in "${nodes[@]}"; do
    if [[ -n $(node_pid "$n") ]]; then
      say "node $n already runs (pid $(node_pid "$n"))"
    else
      launch "$n"
      started+=("$n")
    fi
  done
  wait_serving "${nodes[@]}"
  say "ready: ${#started[@]} node(s) started, 3 serving"
  echo "KAFKA_BOOTSTRAP_SERVERS=$bootstrap"
}

signal_and_wait() {  # signal_and_wait SIGNAL N...: signal the nodes, wait until they are gone
  local sig="$1" n pid pids=() deadline
  shift
  for n in "$@"; do
    pid="$(node_pid "$n")"
    [[ -n $pid ]] || continue
    kill "-$sig" "$pid" 2>/dev/null || true
    pids+=("$n:$pid")
  done
  deadline=$((SECONDS + 30))
  for entry in "${pids[@]}"; do
    n="${entry%%:*}" pid="${entry#*:}"
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS >= deadline)); then
        say "node $n did not stop within 30s after SIG$sig; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 30))
      fi
      sleep 0.1
    done
    rm -f "$(pidfile_of "$n")"
  done
  ((${#pids[@]} > 0))
}

stop() {
  # All at once: a node stopping alone waits for a controller its peers may have been.
  if signal_and_wait TERM "${nodes[@]}"; then say "stopped"; else say "no node of this cluster is running"; fi
}

status() {
  local n pid failed=0
  for n in "${nodes[@]}"; do
    pid="$(node_pid "$n")"
    if [[ -n $pid ]] && serves "$n"; then
      echo "node $n: running (pid $pid) on 127.0.0.1:$(port_of "$n")"
    elif [[ -n $pid ]]; then
      echo "node $n: starting, or does not see all three brokers (pid $pid)"; failed=1
    else
      echo "node $n: not running"; failed=1
    fi
  done
  ((failed == 0)) && echo "KAFKA_BOOTSTRAP_SERVERS=$bootstrap"
  return "$failed"
}

start_node() {
  check_node "${1:-}"
  [[ -f $(props_of "$1") ]] || die "node $1 was never configured: run 'start' first"
  if [[ -n $(node_pid "$1") ]]; then
    say "node $1 already runs (pid $(node_pid "$1"))"
  else
    launch "$1"
  fi
  wait_serving "$1"
  say "node $1 serves (pid $(node_pid "$1"))"
}

kill_node() {
  check_node "${1:-}"
  signal_and_wait KILL "$1" && say "node $1 killed" || say "node $1 was not running"
}

stop_node() {
  check_node "${1:-}"
  signal_and_wait TERM "$1" && say "node $1 stopped" || say "node $1 was not running"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  start-node) start_node "${2:-}" ;;
  kill-node) kill_node "${2:-}" ;;
  stop-node) stop_node "${2:-}" ;;
  *) echo "usage: $0 start|stop|status|start-node N|kill-node N|stop-node N" >&2; exit 2 ;;
esac
