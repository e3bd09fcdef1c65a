#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) for development, tests and the demo.
#
#   ops/kafka/kafka.sh fetch    copy the broker jars from Maven Central (cached)
#   ops/kafka/kafka.sh start    fetch, format storage once, start, wait until it answers
#   ops/kafka/kafka.sh stop     stop the broker this checkout started (SIGTERM, then SIGKILL)
#   ops/kafka/kafka.sh status   say whether it runs
#   ops/kafka/kafka.sh cluster-start|cluster-stop|cluster-status|cluster-kill-node N|...
#                               a three-node cluster instead: see ops/kafka/cluster.sh
#
# Settings (environment): KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093),
# KAFKA_HOME_DIR (<project>/.local/kafka), KAFKA_START_TIMEOUT (90 seconds),
# KAFKA_HEAP (512m), KAFKA_CLUSTER_ID (a random id when the storage is first formatted).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
home="${KAFKA_HOME_DIR:-$root/.local/kafka}"
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-9093}"
timeout="${KAFKA_START_TIMEOUT:-90}"
heap="${KAFKA_HEAP:-512m}"
lib="$home/lib"
data="$home/data"
props="$home/server.properties"
pidfile="$home/kafka.pid"
logfile="$home/broker.log"
bootstrap="127.0.0.1:$port"

say() { echo "kafka: $*" >&2; }
die() { echo "kafka: error: $*" >&2; exit 1; }

port_open() {  # port_open PORT -> 0 when something accepts connections there
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(0.5)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
}

answers() { python3 "$here/probe.py" 127.0.0.1 "$port" 2 >/dev/null; }

our_pid() {  # the pid of this checkout's broker, from the pid file or the process table
  local pid=""
  if [[ -f $pidfile ]]; then
    pid="$(cat "$pidfile")"
    if ! kill -0 "$pid" 2>/dev/null; then rm -f "$pidfile"; pid=""; fi
  fi
  if [[ -z $pid ]]; then
    pid="$(pgrep -f -- "kafka.Kafka $props" | head -n 1 || true)"
    [[ -n $pid ]] && echo "$pid" >"$pidfile"
  fi
  echo "$pid"
}

fetch() {
  local stamp="$lib/.pom.sha256" want
  want="$(sha256sum "$here/pom.xml" | cut -d' ' -f1)"
  if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the broker from Maven Central"
  command -v java >/dev/null || die "a Java runtime (17+) is needed to run the broker"
  say "fetching the broker jars from Maven Central into $lib"
  rm -rf "$lib.tmp"
  mvn -B -q -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$lib.tmp" >&2 \
    || die "mvn could not fetch the broker jars (see the output above)"
  rm -rf "$lib"
  mv "$lib.tmp" "$lib"
  echo "$want" >"$stamp"
}

configure() {
  mkdir -p "$data"
  sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$controller_port|g" -e "s|@DATA_DIR@|$data|g" \
    "$here/server.properties.in" >"$props"
  if [[ ! -f $data/meta.properties ]]; then
    local cluster_id
    cluster_id="${KAFKA_CLUSTER_ID:-$(python3 -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))')}"
    # "--cluster-id=ID" in one word: an id may start with "-" (URL-safe base64), and
    # "-t ID" would then be read as an option.
    java -cp "$lib/*" -Dlog4j.configuration="file:$here/log4j.properties" \
      kafka.tools.StorageTool format "--cluster-id=$cluster_id" -c "$props" --ignore-formatted >&2 \
      || die "formatting the storage in $data failed"
  fi
}

wait_ready() {  # wait_ready PID: until the broker answers a metadata request, or fail
  local pid="$1" deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$pidfile"
      tail -n 30 "$logfile" >&2 || true
      die "the broker exited during start-up (log above, full log in $logfile)"
    fi
    if answers; then return 0; fi
    sleep 0.2
  done
  die "the broker did not answer on $bootstrap within ${timeout}s (log: $logfile)"
}

start() {
  local pid
  pid="$(our_pid)"
  if [[ -n $pid ]]; then
    if answers; then
      say "reusing the broker already running (pid $pid)"
      echo "KAFKA_BOOTSTRAP_SERVERS=$bootstrap"
      return 0
    fi
    say "a broker from an earlier run (pid $pid) is not answering; waiting for it"
    wait_ready "$pid"
    echo "KAFKA_BOOTSTRAP_SERVERS=$bootstrap"
    return 0
  fi
  for p in "$port" "$controller_port"; do
    if port_open "$p"; then
      die "port $p on 127.0.0.1 is taken by another process, not this checkout's broker. Stop it, or pick free ports: KAFKA_PORT=29092 KAFKA_CONTROLLER_PORT=29093 make kafka-up"
    fi
  done
  fetch
  configure
  say "starting the broker on $bootstrap (data in $data)"
  # setsid: the broker outlives the shell that started it (make, CI) and gets no terminal signals.
  setsid java "-Xms256m" "-Xmx$heap" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$here/log4j.properties" \
    -cp "$lib/*" kafka.Kafka "$props" >"$logfile" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$pidfile"
  wait_ready "$pid"
  say "ready (pid $pid)"
  echo "KAFKA_BOOTSTRAP_SERVERS=$bootstrap"
}

stop() {
  local pid
  pid="$(our_pid)"
  if [[ -z $pid ]]; then
    say "no broker of this checkout is running"
    return 0
  fi
  say "stopping the broker (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; say "stopped"; return 0; }
    sleep 0.2
  done
  say "the broker did not stop within 30s after SIGTERM; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

status() {
  local pid
  pid="$(our_pid)"
  if [[ -n $pid ]] && answers; then
    echo "running (pid $pid) KAFKA_BOOTSTRAP_SERVERS=$bootstrap"
  elif [[ -n $pid ]]; then
    echo "starting or unresponsive (pid $pid)"; return 1
  else
    echo "not running"; return 1
  fi
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  cluster-*) exec "$here/cluster.sh" "${1#cluster-}" "${@:2}" ;;
  *) echo "usage: $0 fetch|start|stop|status|cluster-start|cluster-stop|cluster-status" >&2; exit 2 ;;
esac
