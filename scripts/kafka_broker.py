#!/usr/bin/env python3
"""Start, stop and inspect the local Apache Kafka broker (KRaft, one node, 127.0.0.1).

Standard library only, so it runs before the project's virtual environment exists.
The broker's jars come from Maven Central through Maven (``scripts/kafka/pom.xml``) into
``.cache/kafka/``; its data, log, config and pid live in ``.run/kafka/``. Both are ignored by git.

Environment:
  TASKD_BOOTSTRAP_SERVERS      use this broker instead; nothing is started or stopped
  TASKD_KAFKA_PORT             client port (default 9092)
  TASKD_KAFKA_CONTROLLER_PORT  controller port (default 9093)
  TASKD_KAFKA_HEAP             JVM heap, e.g. 512m (default)
  TASKD_KAFKA_START_TIMEOUT_S  how long to wait for the broker to answer (default 90)
  TASKD_KAFKA_RUN_DIR          where data, log, config and pid go (default .run/kafka)
  TASKD_KAFKA_VERSION          another Kafka version than the one pinned in the pom
  TASKD_KAFKA_CONFIG_TEMPLATE  another server.properties template (same @...@ placeholders)
  TASKD_KAFKA_PROBE_TLS        CA,certificate,key (PEM files): the readiness probe speaks TLS
                               with them (for a template whose client port is SSL)
"""

from __future__ import annotations

import base64
import functools
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "scripts" / "kafka" / "pom.xml"
LOG4J_CONFIG = ROOT / "scripts" / "kafka" / "log4j2.properties"
SERVER_TEMPLATE = Path(
    os.environ.get("TASKD_KAFKA_CONFIG_TEMPLATE")
    or ROOT / "scripts" / "kafka" / "server.properties.in"
)
RUN_DIR = Path(os.environ.get("TASKD_KAFKA_RUN_DIR") or ROOT / ".run" / "kafka").resolve()
PID_FILE = RUN_DIR / "broker.pid"
DATA_DIR = RUN_DIR / "data"
CONFIG_FILE = RUN_DIR / "server.properties"
BROKER_LOG = RUN_DIR / "server.log"
CONSOLE_LOG = RUN_DIR / "console.log"
MVN_LOG = RUN_DIR / "mvn.log"


class BrokerError(Exception):
    """One clear line for the user; the script exits non-zero with it."""


def kafka_version() -> str:
    override = os.environ.get("TASKD_KAFKA_VERSION")
    if override:
        return override
    text = POM.read_text()
    start = text.index("<kafka.version>") + len("<kafka.version>")
    return text[start : text.index("</kafka.version>")].strip()


def libs_dir() -> Path:
    return ROOT / ".cache" / "kafka" / f"libs-{kafka_version()}"


def port() -> int:
    return _int_env("TASKD_KAFKA_PORT", 9092)


def controller_port() -> int:
    return _int_env("TASKD_KAFKA_CONTROLLER_PORT", 9093)


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BrokerError(f"{name}={raw!r} is not an integer") from None
    if not 0 < value < 65536 and name.endswith("PORT"):
        raise BrokerError(f"{name}={value} is not a TCP port (1-65535)")
    return value


# --- readiness: a Kafka Metadata request (v4) over a raw socket -------------------------------


def metadata_brokers(host: str, tcp_port: int, timeout_s: float = 2.0) -> int:
    """Send a Metadata v4 request and return how many brokers the cluster reports.

    Raises OSError when nothing answers or the answer is not Kafka's.
    """
    correlation_id = 7
    client_id = b"taskd-kafka-start"
    header = struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id
    body = struct.pack(">i?", -1, False)  # all topics, no auto-creation
    request = header + body
    with _connect(host, tcp_port, timeout_s) as sock:
        sock.settimeout(timeout_s)
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        if not 8 <= size <= 64 * 1024 * 1024:
            raise OSError(f"not a Kafka response (size {size})")
        payload = _recv_exact(sock, size)
    got_id, _throttle_ms, broker_count = struct.unpack(">iii", payload[:12])
    if got_id != correlation_id:
        raise OSError("not a Kafka response (correlation id)")
    return int(broker_count)


def _connect(host: str, tcp_port: int, timeout_s: float) -> socket.socket:
    """A connection to the broker: TLS with client certificate when TASKD_KAFKA_PROBE_TLS says
    so, else plain TCP."""
    context = _probe_tls()
    sock = socket.create_connection((host, tcp_port), timeout=timeout_s)
    if context is None:
        return sock
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except (OSError, ValueError):
        sock.close()
        raise


@functools.cache
def _probe_tls() -> ssl.SSLContext | None:
    """The TLS context TASKD_KAFKA_PROBE_TLS names (``CA,certificate,key``), built once; a bad
    value stops the script with one line (it is no broker that is not ready)."""
    probe_tls = os.environ.get("TASKD_KAFKA_PROBE_TLS")
    if not probe_tls:
        return None
    parts = probe_tls.split(",")
    if len(parts) != 3:
        sys.exit(f"TASKD_KAFKA_PROBE_TLS must be CA,certificate,key (PEM files), got {probe_tls!r}")
    ca, cert, key = parts
    try:
        context = ssl.create_default_context(cafile=ca)
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        sys.exit(f"TASKD_KAFKA_PROBE_TLS: cannot load {probe_tls}: {error}")
    return context


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < count:
        chunk = sock.recv(count - len(chunks))
        if not chunk:
            raise OSError("connection closed")
        chunks.extend(chunk)
    return bytes(chunks)


def answers_metadata(host: str, tcp_port: int) -> bool:
    try:
        return metadata_brokers(host, tcp_port) >= 1
    except (OSError, struct.error):
        return False


def port_in_use(tcp_port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", tcp_port)) == 0


# --- the broker process -----------------------------------------------------------------------


def running_pid() -> int | None:
    """Pid of the broker this project started, if it is still alive."""
    try:
        pid = int(PID_FILE.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists() and b"kafka.Kafka" not in cmdline.read_bytes():
        return None  # the pid was reused by another program
    return pid


def require_tools() -> None:
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise BrokerError(
                f"`{tool}` is not on PATH: install OpenJDK 17+ and Maven to run the local broker,"
                " or set TASKD_BOOTSTRAP_SERVERS to use a broker you already have"
            )


def fetch_jars() -> Path:
    """Resolve the broker's jars with Maven once; later starts reuse the cache."""
    target = libs_dir()
    marker = target / ".complete"
    if marker.exists():
        return target
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    print(f"fetching Apache Kafka {kafka_version()} jars from Maven Central ...", flush=True)
    command = [
        "mvn", "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
        f"-DoutputDirectory={target}", "-DincludeScope=runtime",
        f"-Dkafka.version={kafka_version()}",
    ]  # fmt: skip
    with MVN_LOG.open("w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0 or not any(target.glob("kafka_2.13-*.jar")):
        raise BrokerError(
            f"could not download the Kafka jars with Maven (exit {result.returncode});"
            f" see {MVN_LOG}"
        )
    marker.write_text(kafka_version() + "\n")
    return target


def write_config() -> None:
    text = SERVER_TEMPLATE.read_text()
    text = text.replace("@PORT@", str(port())).replace("@CONTROLLER_PORT@", str(controller_port()))
    text = text.replace("@LOG_DIRS@", str(DATA_DIR))
    CONFIG_FILE.write_text(text)


def java_command(libs: Path, main: str, *args: str) -> list[str]:
    heap = os.environ.get("TASKD_KAFKA_HEAP", "512m")
    return [
        "java", f"-Xms{heap}", f"-Xmx{heap}", "-server", "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={RUN_DIR}", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp", f"{libs}/*", main, *args,
    ]  # fmt: skip


def new_cluster_id() -> str:
    """A random KRaft cluster id (a UUID in URL-safe base64, as ``kafka-storage random-uuid``
    makes). One in 64 starts with a '-', which the storage tool's argument parser takes for an
    option ("--cluster-id: expected one argument"): those are drawn again, as Kafka's own
    ``Uuid.randomUuid`` does."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def format_storage(libs: Path) -> None:
    """Format the KRaft log directory on first use (a cluster id of our own)."""
    if (DATA_DIR / "meta.properties").exists():
        return
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    cluster_id = new_cluster_id()
    command = java_command(
        libs, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(CONFIG_FILE)
    )
    command = [part for part in command if not part.startswith("-Xm")]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise BrokerError(f"formatting the Kafka storage failed: {last[0]}")


def launch(libs: Path) -> subprocess.Popen[bytes]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with CONSOLE_LOG.open("ab") as console:
        process = subprocess.Popen(
            java_command(libs, "kafka.Kafka", str(CONFIG_FILE)),
            stdout=console,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the shell that started it
        )
    PID_FILE.write_text(f"{process.pid}\n")
    return process


def _alive(process: subprocess.Popen[bytes] | int) -> bool:
    """Whether the broker process lives (our child: its exit status; else a signal-0 probe)."""
    if isinstance(process, subprocess.Popen):
        return process.poll() is None
    try:
        os.kill(process, 0)
    except ProcessLookupError:
        return False
    return True


def wait_ready(process: subprocess.Popen[bytes] | int) -> None:
    timeout_s = float(os.environ.get("TASKD_KAFKA_START_TIMEOUT_S", "90"))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if answers_metadata("127.0.0.1", port()):
            return
        if not _alive(process):
            raise BrokerError(f"the broker exited while starting; see {_log_hint()}")
        time.sleep(0.2)
    raise BrokerError(f"the broker did not answer within {timeout_s:.0f} s; see {_log_hint()}")


def _log_hint() -> str:
    return f"{BROKER_LOG} and {CONSOLE_LOG}"


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# --- commands ---------------------------------------------------------------------------------


def start() -> None:
    external = os.environ.get("TASKD_BOOTSTRAP_SERVERS")
    if external:
        print(f"TASKD_BOOTSTRAP_SERVERS={external}: using that broker, nothing started")
        return
    pid = running_pid()
    if pid is not None and answers_metadata("127.0.0.1", port()):
        print(f"Kafka already running (pid {pid}) on 127.0.0.1:{port()}")
        return
    if pid is None:
        for taken in (port(), controller_port()):
            if port_in_use(taken):
                raise BrokerError(
                    f"port {taken} on 127.0.0.1 is taken by another program; stop it, set"
                    " TASKD_KAFKA_PORT/TASKD_KAFKA_CONTROLLER_PORT, or point"
                    " TASKD_BOOTSTRAP_SERVERS at a broker you already run"
                )
    require_tools()
    began = time.monotonic()
    libs = fetch_jars()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    write_config()
    process: subprocess.Popen[bytes] | int = pid if pid is not None else 0
    if pid is None:
        format_storage(libs)
        process = launch(libs)
        pid = process.pid
    wait_ready(process)
    print(
        f"Kafka {kafka_version()} running (pid {pid}) on 127.0.0.1:{port()}"
        f" after {time.monotonic() - began:.1f} s"
    )


def stop() -> None:
    if os.environ.get("TASKD_BOOTSTRAP_SERVERS"):
        print("TASKD_BOOTSTRAP_SERVERS is set: that broker is not ours, nothing stopped")
        return
    pid = running_pid()
    if pid is None:
        print("Kafka is not running")
        PID_FILE.unlink(missing_ok=True)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while running_pid() == pid and time.monotonic() < deadline:
        time.sleep(0.2)
    if running_pid() == pid:
        os.kill(pid, signal.SIGKILL)
    PID_FILE.unlink(missing_ok=True)
    print(f"Kafka stopped (pid {pid})")


def status() -> int:
    external = os.environ.get("TASKD_BOOTSTRAP_SERVERS")
    if external:
        host, _, raw_port = external.split(",")[0].rpartition(":")
        up = answers_metadata(host or "127.0.0.1", int(raw_port or 9092))
        print(f"external broker {external}: {'answering' if up else 'NOT answering'}")
        return 0 if up else 1
    pid = running_pid()
    if pid is None:
        print("Kafka is not running")
        return 1
    up = answers_metadata("127.0.0.1", port())
    rss = rss_mib(pid)
    memory = f", RSS {rss:.0f} MiB" if rss is not None else ""
    state = "answering" if up else "NOT answering"
    print(f"Kafka {kafka_version()} pid {pid} on 127.0.0.1:{port()}: {state}{memory}")
    return 0 if up else 1


def main(argv: list[str]) -> int:
    commands = {"start": start, "stop": stop, "status": status}
    if len(argv) != 2 or argv[1] not in commands:
        print("usage: kafka_broker.py start|stop|status", file=sys.stderr)
        return 2
    try:
        result = commands[argv[1]]()
    except BrokerError as error:
        print(f"kafka-{argv[1]}: error: {error}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
