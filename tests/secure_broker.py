"""A second Kafka broker for the security tests: TLS, SCRAM-SHA-512 and the KRaft
StandardAuthorizer with ACLs, on 127.0.0.1 only.

It is started by ``scripts/kafka_broker.py`` (the jars ``scripts/kafka-start`` fetched) with a
server template of its own, in a run directory under the test's temporary folder, with
certificates made here by Python's ``cryptography`` (no ``openssl`` needed). Two client
listeners:

- ``SASL_SSL``: TLS (the broker's certificate checked against the test's CA) and SCRAM;
- ``SSL``: mutual TLS, the client's certificate names it (``CN=agent`` is ``User:agent``).

``User:admin`` (a certificate and a SCRAM credential) and the broker itself are super users;
everyone else has only the ACLs granted. A watchdog process stops the broker when the test
process ends, however it ends, or after ``LIFETIME_S``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parent.parent
BROKER_SCRIPT = ROOT / "scripts" / "kafka_broker.py"
LIFETIME_S = 600
"""The broker is stopped after this long whatever happens."""
KEY_PASSWORD = "agent-key-secret"
"""The password of the agent's encrypted private key."""

TEMPLATE = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:@CONTROLLER_PORT@
listeners=MTLS://127.0.0.1:@PORT@,SECURE://127.0.0.1:{sasl_port},\
CONTROLLER://127.0.0.1:@CONTROLLER_PORT@
advertised.listeners=MTLS://127.0.0.1:@PORT@,SECURE://127.0.0.1:{sasl_port}
inter.broker.listener.name=MTLS
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:SSL,MTLS:SSL,SECURE:SASL_SSL
ssl.keystore.type=PEM
ssl.keystore.location={pki}/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location={pki}/ca.pem
ssl.client.auth=required
listener.name.secure.ssl.client.auth=none
ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.secure.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.secure.scram-sha-512.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required;
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:broker;User:admin
log.dirs=@LOG_DIRS@
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=2
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
"""

WATCHDOG = """\
import os, signal, sys, time
parent, pid_file, lifetime = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
deadline = time.monotonic() + lifetime
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
while alive(parent) and time.monotonic() < deadline:
    time.sleep(1)
try:
    broker = int(open(pid_file).read())
    if b"kafka.Kafka" in open(f"/proc/{broker}/cmdline", "rb").read():
        os.kill(broker, signal.SIGTERM)
        for _ in range(150):
            time.sleep(0.2)
            if not alive(broker):
                break
        else:
            os.kill(broker, signal.SIGKILL)
except (OSError, ValueError):
    pass
"""


@dataclass(frozen=True)
class Pki:
    """The test's CA and the certificates made with it (PEM files in ``folder``)."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    def cert(self, name: str) -> Path:
        return self.folder / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.folder / f"{name}.key"


def make_pki(folder: Path, clients: tuple[str, ...]) -> Pki:
    """A CA, the broker's certificate (for 127.0.0.1 and localhost; ``broker.pem`` holds its key
    and certificate, as Kafka's PEM key store wants) and one client certificate per name
    (``CN=<name>``); the agent's key is encrypted with KEY_PASSWORD."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "taskd test CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pki = Pki(folder)
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for name in ("broker", *clients):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = _builder(subject, ca_name, key, now).add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        )
        if name == "broker":
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode())
            if name == "agent"
            else serialization.NoEncryption()
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        pki.cert(name).write_bytes(cert)
        pki.key(name).write_bytes(key_pem)
        if name == "broker":
            (folder / "broker.pem").write_bytes(key_pem + cert)
    for path in folder.iterdir():
        path.chmod(0o600)
    return pki


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


@dataclass(frozen=True)
class SecureBroker:
    """A running secure broker: its two client addresses and its certificates."""

    sasl_ssl: str
    """host:port of the SASL_SSL listener (TLS and SCRAM-SHA-512)."""
    ssl: str
    """host:port of the SSL listener (mutual TLS)."""
    pki: Pki
    run_dir: Path
    watchdog: subprocess.Popen[bytes]
    """Stops the broker when the test process ends (this process's child)."""


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _broker_env(run_dir: Path, pki: Pki, port: int, controller_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKD_")}
    return {
        **env,
        "TASKD_KAFKA_RUN_DIR": str(run_dir),
        "TASKD_KAFKA_PORT": str(port),
        "TASKD_KAFKA_CONTROLLER_PORT": str(controller_port),
        "TASKD_KAFKA_CONFIG_TEMPLATE": str(run_dir / "server.properties.in"),
        "TASKD_KAFKA_PROBE_TLS": f"{pki.ca},{pki.cert('admin')},{pki.key('admin')}",
        "TASKD_KAFKA_HEAP": "384m",
    }


def start(folder: Path, clients: tuple[str, ...]) -> SecureBroker:
    """Make the certificates, write the template, start the broker and its watchdog (which
    stops it when this process ends; :func:`stop` stops both sooner)."""
    pki = make_pki(folder / "pki", ("admin", *clients))
    run_dir = folder / "broker"
    run_dir.mkdir(parents=True)
    port, sasl_port, controller_port = free_ports(3)
    (run_dir / "server.properties.in").write_text(
        TEMPLATE.format(sasl_port=sasl_port, pki=pki.folder)
    )
    env = _broker_env(run_dir, pki, port, controller_port)
    watchdog = subprocess.Popen(
        [sys.executable, "-c", WATCHDOG, str(os.getpid()), str(run_dir / "broker.pid"),
         str(LIFETIME_S)],
        start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    started = subprocess.run(
        [sys.executable, str(BROKER_SCRIPT), "start"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if started.returncode != 0:
        _stop(run_dir, watchdog)
        log = run_dir / "server.log"
        tail = log.read_text()[-3000:] if log.exists() else ""
        raise RuntimeError(f"the secure broker did not start: {started.stderr.strip()}\n{tail}")
    return SecureBroker(f"127.0.0.1:{sasl_port}", f"127.0.0.1:{port}", pki, run_dir, watchdog)


def stop(broker: SecureBroker) -> None:
    """Stop the broker and its watchdog."""
    _stop(broker.run_dir, broker.watchdog)


def _stop(run_dir: Path, watchdog: subprocess.Popen[bytes]) -> None:
    env = {**os.environ, "TASKD_KAFKA_RUN_DIR": str(run_dir)}
    env.pop("TASKD_BOOTSTRAP_SERVERS", None)
    subprocess.run(
        [sys.executable, str(BROKER_SCRIPT), "stop"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    watchdog.terminate()
    watchdog.wait(10)


def admin_config(broker: SecureBroker) -> dict[str, str]:
    """librdkafka settings of the super user, over mutual TLS."""
    return {
        "bootstrap.servers": broker.ssl,
        "security.protocol": "SSL",
        "ssl.ca.location": str(broker.pki.ca),
        "ssl.certificate.location": str(broker.pki.cert("admin")),
        "ssl.key.location": str(broker.pki.key("admin")),
    }


def add_scram_users(broker: SecureBroker, passwords: dict[str, str]) -> None:
    """SCRAM-SHA-512 credentials for ``passwords`` (user: password), made by the super user."""
    admin = AdminClient(admin_config(broker))
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
    upserts = [
        UserScramCredentialUpsertion(user, info, password.encode())
        for user, password in passwords.items()
    ]
    for future in admin.alter_user_scram_credentials(upserts).values():
        future.result(30)
