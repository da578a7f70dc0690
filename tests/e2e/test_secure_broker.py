"""Task Distributor on a secured broker, as an operator sets it up from docs/operations.md,
*Security*: TLS, SCRAM-SHA-512 and the KRaft StandardAuthorizer, one credential per role with
exactly the ACLs that section lists (its ``kafka-acls`` commands are read from the page and
granted as written), certificates made by the test (tests/secure_broker.py).

A dispatcher (SCRAM over TLS), an agent (its certificate, mutual TLS, an encrypted key) and a
producer (SCRAM over TLS) run tasks end to end; each credential is refused what its role does
not need; a client without credentials is refused; a wrong password says so in one line.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from streams.adapters.kafka import make_consumer, make_producer
from streams.settings import load_settings
from tests import secure_broker
from tests.secure_broker import SecureBroker, free_ports

pytestmark = pytest.mark.timeout(240)

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
TASKD = Path(sys.executable).parent / "taskd"
PASSWORDS = {
    "admin": "admin-pw-1",
    "producer": "producer-pw-2",
    "dispatcher": "dispatcher-pw-3",
    "agent": "agent-pw-4",
}
HTTP_TOKEN = "views-token-5"
RUN_S = 90
READY_S = 60


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"sec{uuid.uuid4().hex[:8]}."


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, prefix: str) -> Iterator[SecureBroker]:
    """The secure broker with a SCRAM user per role, the ACLs of the docs and the topics,
    these created by the super user with ``taskd topics create``."""
    folder = tmp_path_factory.mktemp("secure")
    running = secure_broker.start(folder, ("agent",))
    try:
        secure_broker.add_scram_users(running, PASSWORDS)
        admin = AdminClient(secure_broker.admin_config(running))
        for future in admin.create_acls(documented_acls(prefix)).values():
            future.result(30)
        del admin
        created = taskd(env(running, prefix, "admin"), "topics", "create")
        assert created.returncode == 0, created.stderr
        yield running
    finally:
        secure_broker.stop(running)


def documented_acls(prefix: str) -> list[AclBinding]:
    """The ACLs the ``acl`` lines of the Security section's shell block grant (``acl`` is
    ``kafka-acls.sh ... --add``), for ``prefix`` in place of the section's ``taskd.``."""
    section = OPERATIONS.read_text().split("\n## Security\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("acl --")]
    assert len(lines) >= 10, "the Security section lists the ACLs as `acl --...` lines"
    bindings = []
    for line in lines:
        words = shlex.split(line)[1:]
        options: dict[str, list[str]] = {}
        for flag, value in zip(words[::2], words[1::2], strict=True):
            options.setdefault(flag, []).append(value)
        (pattern,) = options.pop("--resource-pattern-type", ["literal"])
        (principal,) = options.pop("--allow-principal")
        operations = [AclOperation[name.upper()] for name in options.pop("--operation")]
        resources = [(ResourceType.TOPIC, name) for name in options.pop("--topic", [])]
        resources += [(ResourceType.GROUP, name) for name in options.pop("--group", [])]
        assert not options, f"options this test does not know: {options}"
        for kind, name in resources:
            assert name.startswith("taskd."), name
            bindings += [
                AclBinding(
                    kind, prefix + name.removeprefix("taskd."),
                    ResourcePatternType[pattern.upper()], principal, "*", operation,
                    AclPermissionType.ALLOW,
                )
                for operation in operations
            ]  # fmt: skip
    return bindings


def env(broker: SecureBroker, prefix: str, who: str, **extra: str) -> dict[str, str]:
    """The ``TASKD_*`` environment of one role: SCRAM over TLS for a user of PASSWORDS;
    ``agent-cert`` and ``admin-cert``: that certificate over mutual TLS (the agent's key is
    encrypted); ``TASKD_*`` given as ``extra`` last."""
    pki = broker.pki
    base = {name: value for name, value in os.environ.items() if not name.startswith("TASKD_")}
    base.update(
        TASKD_TOPIC_PREFIX=prefix,
        TASKD_SHARDS="2",
        TASKD_DISPATCH_PARTITIONS="4",
        TASKD_AGENT_METRICS_PORT="0",
        TASKD_CONNECT_TIMEOUT_MS="5000",
        TASKD_SSL_CA_FILE=str(pki.ca),
    )
    if who.endswith("-cert"):
        name = who.removesuffix("-cert")
        base.update(
            TASKD_BOOTSTRAP_SERVERS=broker.ssl,
            TASKD_SECURITY_PROTOCOL="SSL",
            TASKD_SSL_CERT_FILE=str(pki.cert(name)),
            TASKD_SSL_KEY_FILE=str(pki.key(name)),
        )
        if name == "agent":
            base["TASKD_SSL_KEY_PASSWORD"] = secure_broker.KEY_PASSWORD
    else:
        base.update(
            TASKD_BOOTSTRAP_SERVERS=broker.sasl_ssl,
            TASKD_SECURITY_PROTOCOL="SASL_SSL",
            TASKD_SASL_USERNAME=who,
            TASKD_SASL_PASSWORD=PASSWORDS[who],
        )
    base.update({f"TASKD_{name.upper()}": value for name, value in extra.items()})
    return base


def taskd(
    environment: dict[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TASKD), *args], input=stdin, capture_output=True, text=True, env=environment,
        timeout=RUN_S, check=False,
    )  # fmt: skip


@contextmanager
def background(environment: dict[str, str], log: Path, *args: str) -> Iterator[None]:
    """``taskd ARGS`` running (output in ``log``) once it says ready; stopped at the end."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(TASKD), *args], stdout=out, stderr=subprocess.STDOUT, env=environment
        )
    try:
        deadline = time.monotonic() + READY_S
        while "ready" not in log.read_text():
            assert process.poll() is None, f"taskd {args[0]} exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"taskd {args[0]}: {log.read_text()[-2000:]}"
            time.sleep(0.1)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def http_status(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def http_body(url: str, token: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with opener.open(request, timeout=10) as response:
        return str(response.read().decode())


def test_a_dispatcher_an_agent_and_a_producer_each_with_its_own_credential_run_tasks(
    broker: SecureBroker, prefix: str, tmp_path: Path
) -> None:
    (http_port,) = free_ports(1)
    dispatcher = env(
        broker, prefix, "dispatcher", http_port=str(http_port), http_token=HTTP_TOKEN,
        log_level="debug",
    )  # fmt: skip
    agent = env(broker, prefix, "agent-cert", log_level="debug")
    tasks = [
        {"type": "work", "priority": level % 4, "payload": {"work_ms": 5}, "task_id": f"s{level}"}
        for level in range(6)
    ]
    with (
        background(dispatcher, tmp_path / "dispatcher.log", "dispatcher"),
        background(
            agent,
            tmp_path / "agent.log",
            "agent",
            "--handler",
            "streams.examples:work",
            "--capacity",
            "2",
        ),
    ):
        submitted = taskd(
            env(broker, prefix, "producer"),
            "submit", "--wait", "-",
            stdin="".join(json.dumps(task) + "\n" for task in tasks),
        )  # fmt: skip
        views = f"http://127.0.0.1:{http_port}"
        status = taskd(env(broker, prefix, "producer", http_port=str(http_port)), "status")
        with_token = taskd(
            env(broker, prefix, "producer", http_port=str(http_port), http_token=HTTP_TOKEN),
            "status", "--json",
        )  # fmt: skip
        codes = {view: http_status(views + view) for view in ("/status", "/context", "/metrics")}
        context = http_body(views + "/context", HTTP_TOKEN)
        helps = [
            taskd(dispatcher, *command, "--help").stdout
            for command in ((), ("dispatcher",), ("agent",), ("submit",), ("status",))
        ]
    said = [
        (tmp_path / "dispatcher.log").read_text(),
        (tmp_path / "agent.log").read_text(),
        submitted.stdout + submitted.stderr,
        status.stdout + status.stderr,
        with_token.stdout + with_token.stderr,
        context,
        *helps,
    ]
    secrets = [*PASSWORDS.values(), HTTP_TOKEN, secure_broker.KEY_PASSWORD]
    assert " DEBUG " in said[0] and " DEBUG " in said[1]  # the logs at their most detailed
    assert [secret for secret in secrets for text in said if secret in text] == []
    assert submitted.returncode == 0, submitted.stderr
    outcomes = [json.loads(line) for line in submitted.stdout.splitlines()]
    assert sorted(o["task_id"] for o in outcomes) == [t["task_id"] for t in tasks]
    assert {o["status"] for o in outcomes} == {"SUCCEEDED"}
    assert all(o["agent_id"] for o in outcomes)

    assert status.returncode == 1 and "TASKD_HTTP_TOKEN" in status.stderr
    assert with_token.returncode == 0, with_token.stderr
    assert json.loads(with_token.stdout)["details"]["completed"] >= len(tasks)
    assert codes == {"/status": 401, "/context": 401, "/metrics": 200}

    admin = env(broker, prefix, "admin-cert")
    results = taskd(admin, "tail", "results")
    assert results.returncode == 0, results.stderr
    assert len(results.stdout.splitlines()) == len(tasks)
    letters = taskd(admin, "dlq", "list", "--json")
    assert (letters.returncode, letters.stdout.strip()) == (0, ""), letters.stderr


def test_a_producer_credential_cannot_read_results_or_write_dispatch(
    broker: SecureBroker, prefix: str
) -> None:
    producer = load_settings(
        bootstrap_servers=broker.sasl_ssl, topic_prefix=prefix, security_protocol="SASL_SSL",
        sasl_username="producer", sasl_password=PASSWORDS["producer"], ssl_ca_file=broker.pki.ca,
    )  # fmt: skip
    topics = producer.topics
    reports: dict[str, str] = {}
    writer = make_producer(producer)
    for topic in (topics.tasks(0), topics.dispatch):
        writer.produce(
            topic, b"{}", key=b"k",
            on_delivery=lambda error, msg: reports.update({msg.topic(): error and error.name()}),
        )  # fmt: skip
    assert writer.flush(30) == 0
    assert reports == {topics.tasks(0): None, topics.dispatch: "TOPIC_AUTHORIZATION_FAILED"}

    for topic, wanted in ((topics.replies, None), (topics.results, "TOPIC_AUTHORIZATION_FAILED")):
        reader = make_consumer(producer, group_id=f"{prefix}replies.{uuid.uuid4().hex}")
        reader.subscribe([topic])
        error = None
        deadline = time.monotonic() + (15 if wanted else 3)
        while error is None and time.monotonic() < deadline:
            message = reader.poll(0.2)
            if message is not None and message.error() is not None:
                error = message.error().name()
        reader.close()
        assert error == wanted, topic


def test_an_agent_credential_cannot_write_the_task_topics(
    broker: SecureBroker, prefix: str
) -> None:
    task = json.dumps({"type": "work", "priority": 0, "payload": {}})
    for who in ("agent", "agent-cert"):
        refused = taskd(env(broker, prefix, who), "submit", "-", stdin=task + "\n")
        assert refused.returncode == 1, who
        assert f"{prefix}tasks.p0: Broker: Topic authorization failed" in refused.stderr, who


def test_a_client_without_credentials_is_refused_and_a_wrong_password_says_so(
    broker: SecureBroker, prefix: str
) -> None:
    sasl = env(broker, prefix, "producer")
    cases = {
        "plaintext": {**sasl, "TASKD_SECURITY_PROTOCOL": "PLAINTEXT", "TASKD_SSL_CA_FILE": ""},
        "tls without a certificate": {**env(broker, prefix, "producer"), "TASKD_SASL_USERNAME": ""}
        | {"TASKD_BOOTSTRAP_SERVERS": broker.ssl, "TASKD_SECURITY_PROTOCOL": "SSL"},
        "wrong password": {**sasl, "TASKD_SASL_PASSWORD": "not-" + PASSWORDS["producer"]},
    }
    running = {
        case: subprocess.Popen(
            [str(TASKD), "topics", "list"],
            env=environment,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for case, environment in cases.items()
    }
    done = {case: process.communicate(timeout=RUN_S) for case, process in running.items()}
    for case, (stdout, stderr) in done.items():
        assert running[case].returncode == 1, case
        assert prefix not in stdout, f"{case}: the topics were listed"
        assert len(stderr.strip().splitlines()) == 1, f"{case}: {stderr}"
    wrong = done["wrong password"][1]
    assert re.search("authentication failed", wrong, re.IGNORECASE), wrong
    assert wrong.startswith("error: authentication failed at") and "as producer" in wrong, wrong
    assert PASSWORDS["producer"] not in wrong
