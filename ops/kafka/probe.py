"""Ask a Kafka broker for its metadata with the standard library only.

Used by kafka.sh to decide that a broker really answers (a Metadata round trip,
not just an open port) before the project's virtual environment exists.
Exit code 0 and one line "ok <broker count> <topic count>" when it answers,
1 otherwise. Usage: probe.py HOST PORT [TIMEOUT_SECONDS]
"""

from __future__ import annotations

import socket
import struct
import sys


def metadata_round_trip(host: str, port: int, timeout: float) -> tuple[int, int]:
    """Send a Metadata v1 request for all topics; answer (brokers, topics)."""
    client_id = b"enginestream-probe"
    correlation_id = 7
    # api_key=3 (Metadata), api_version=1, correlation id, client id, topics=null (all)
    body = struct.pack(">hhih", 3, 1, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", -1)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read_exactly(sock, 4))[0]
        payload = _read_exactly(sock, size)
    got_id, broker_count = struct.unpack(">ii", payload[:8])
    if got_id != correlation_id:
        raise ConnectionError(f"unexpected correlation id {got_id}")
    offset = 8
    for _ in range(broker_count):
        offset += 4  # node_id
        host_len = struct.unpack(">h", payload[offset : offset + 2])[0]
        offset += 2 + host_len + 4  # host, port
        rack_len = struct.unpack(">h", payload[offset : offset + 2])[0]
        offset += 2 + max(rack_len, 0)
    offset += 4  # controller_id
    topic_count = struct.unpack(">i", payload[offset : offset + 4])[0]
    return broker_count, topic_count


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        chunks.extend(chunk)
    return bytes(chunks)


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    try:
        brokers, topics = metadata_round_trip(host, port, timeout)
    except (OSError, ConnectionError, struct.error) as exc:
        print(f"no answer: {exc}")
        return 1
    if brokers < 1:
        print("no answer: the broker lists no brokers yet")
        return 1
    print(f"ok {brokers} {topics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
