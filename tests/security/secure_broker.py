"""A private single-node Kafka broker (KRaft) with the security a production cluster has.

Listeners, all on 127.0.0.1 with free ports:

- SASL_SSL: TLS, then a SCRAM-SHA-512 login (the users are written into the storage
  with Kafka's StorageTool before the first start);
- MTLS (protocol SSL): TLS with `ssl.client.auth=required`, a client certificate
  signed by the test CA is the identity;
- INTERNAL and CONTROLLER: plaintext on loopback, between the broker and itself.

The broker's key store and trust store are PEM: its certificate and key inline in
the properties, the CA as a file. Run from the jars that ops/kafka/kafka.sh fetched
(.local/kafka/lib), with the project's log4j settings.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import signal
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.security.certificates import Certificates
from tests.worker_process import free_ports

ROOT = Path(__file__).resolve().parents[2]
KAFKA_LIB = Path(os.environ.get("KAFKA_HOME_DIR", ROOT / ".local" / "kafka")) / "lib"
LOG4J = ROOT / "ops" / "kafka" / "log4j.properties"
PROBE = ROOT / "ops" / "kafka" / "probe.py"
START_TIMEOUT_S = 90.0


def _inline(path: Path) -> str:
    """A PEM file as one properties value (Java's Properties reads the \\n escapes)."""
    return path.read_text().strip().replace("\n", "\\n")


@dataclass
class SecureBroker:
    """The broker process and how to reach each of its listeners."""

    directory: Path
    certs: Certificates
    users: dict[str, str]  # SCRAM-SHA-512 user -> password
    sasl_port: int = 0
    mtls_port: int = 0
    internal_port: int = 0
    controller_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def sasl_bootstrap(self) -> str:
        """host:port of the SASL_SSL (SCRAM-SHA-512) listener."""
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def mtls_bootstrap(self) -> str:
        """host:port of the mutual-TLS listener."""
        return f"127.0.0.1:{self.mtls_port}"

    @property
    def log_path(self) -> Path:
        """The broker's own output."""
        return self.directory / "broker.log"

    def properties(self) -> str:
        """The broker's server.properties."""
        data = self.directory / "data"
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                "listeners="
                f"SASL_SSL://127.0.0.1:{self.sasl_port},MTLS://127.0.0.1:{self.mtls_port},"
                f"INTERNAL://127.0.0.1:{self.internal_port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}",
                "advertised.listeners="
                f"SASL_SSL://127.0.0.1:{self.sasl_port},MTLS://127.0.0.1:{self.mtls_port},"
                f"INTERNAL://127.0.0.1:{self.internal_port}",
                "listener.security.protocol.map="
                "SASL_SSL:SASL_SSL,MTLS:SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=INTERNAL",
                # TLS on both client listeners: the broker's certificate, the test CA.
                "ssl.keystore.type=PEM",
                f"ssl.keystore.certificate.chain={_inline(self.certs.broker_cert)}",
                f"ssl.keystore.key={_inline(self.certs.broker_key)}",
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={self.certs.ca}",
                "listener.name.mtls.ssl.client.auth=required",
                # SCRAM-SHA-512 on the SASL_SSL listener only.
                "sasl.enabled.mechanisms=SCRAM-SHA-512",
                "listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                f"log.dirs={data}",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=2",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=2",
                "group.initial.rebalance.delay.ms=0",
                "log.cleaner.dedupe.buffer.size=16777216",
                "num.network.threads=2",
                "num.io.threads=2",
                "auto.create.topics.enable=false",
                "",
            ]
        )

    def start(self) -> SecureBroker:
        """Format the storage with the SCRAM users, start the broker, wait until it
        answers on its internal listener (then every listener is open)."""
        if not any(KAFKA_LIB.glob("kafka_2.13-*.jar")):
            raise RuntimeError(f"no Kafka jars in {KAFKA_LIB}: run `ops/kafka/kafka.sh fetch`")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sasl_port, self.mtls_port, self.internal_port, self.controller_port = (
            free_ports(4)
        )
        props = self.directory / "server.properties"
        props.write_text(self.properties())
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        scram = [
            arg
            for name, password in self.users.items()
            for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")
        ]
        formatted = subprocess.run(
            [
                *self._java(),
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(props),
                *scram,
            ],
            capture_output=True,
            text=True,
        )
        if formatted.returncode != 0:
            raise RuntimeError(f"formatting the secure broker's storage failed:\n"
                               f"{formatted.stdout}{formatted.stderr}")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*self._java("-Xms128m", "-Xmx384m"), "kafka.Kafka", str(props)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _java(self, *jvm: str) -> list[str]:
        return [
            "java",
            *jvm,
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{LOG4J}",
            "-cp",
            f"{KAFKA_LIB}/*",
        ]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the secure broker exited during start-up:\n{self._tail()}")
            try:
                brokers, _ = _metadata_round_trip("127.0.0.1", self.internal_port, 2.0)
                if brokers >= 1:
                    return
            except (OSError, ConnectionError, struct.error):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the secure broker did not answer within {START_TIMEOUT_S:g} s:\n"
                           f"{self._tail()}")

    def _tail(self) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])


def _metadata_round_trip(host: str, port: int, timeout: float) -> tuple[int, int]:
    """ops/kafka/probe.py's metadata request: (brokers, topics) a broker answers."""
    spec = importlib.util.spec_from_file_location("kafka_probe", PROBE)
    assert spec is not None and spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    return probe.metadata_round_trip(host, port, timeout)


