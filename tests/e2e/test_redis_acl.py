"""The Redis users of ``compose.yaml``, run for real: the exact command line of its ``redis``
service (read from the file, passwords at their documented defaults) on a private
``redis-server`` on a free loopback port, stopped by its PID.

A producer may only XADD to ``tally:usage``; Tally's user runs migrate and the consumer.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from support.alerts import ALERT
from support.fault_servers import redis_server_binary
from support.ledger_support import balance_map, drain, read, urls_of
from tally import bootstrap
from tally.adapters import embedded
from tally.adapters.postgres.reads import org_balances
from tally.config import Settings
from tally.domain.alert_delivery import cloud_event
from tally.sdk.producer import UsageProducer
from tally.service_layer import organizations

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"
STREAM = "tally:usage"
OCTOBER = "2026-10-15T12:00:00Z"


def _defaults(text: str) -> str:
    """Compose's ``${NAME:-default}`` with nothing set: the documented local defaults."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text)


def compose_redis_command() -> list[str]:
    """The ``redis`` service's ``command`` (a JSON-compatible flow sequence)."""
    service = COMPOSE.read_text(encoding="utf-8").split("\n  redis:\n", 1)[1]
    found = re.search(r"^    command: (\[.*?\])$", service, re.S | re.M)
    assert found, "compose.yaml: the redis service's command is a [...] list"
    command: list[str] = json.loads(_defaults(found.group(1)))
    return command


def compose_tally_url(port: int) -> str:
    """``TALLY_REDIS_URL`` as compose gives it to Tally, pointed at the private server."""
    found = re.search(r"^    TALLY_REDIS_URL: (\S+)$", COMPOSE.read_text(encoding="utf-8"), re.M)
    assert found
    return _defaults(found.group(1)).replace("@redis:6379/", f"@127.0.0.1:{port}/")


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[int]:
    """compose's redis-server on a free port (its data in ``tmp_path``); yields the port."""
    command = compose_redis_command()
    assert command[0] == "redis-server"
    port = embedded.free_port()
    # Later options win: only where it listens and keeps its files change.
    local = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", ""]
    binary = redis_server_binary()  # the system's (or Valkey), not Redis 6.2 from the venv
    assert binary is not None
    server = subprocess.Popen(
        [binary, *command[1:], *local], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        probe = redis.Redis(port=port)
        for _ in range(100):
            try:
                probe.ping()
            except AuthenticationError:
                break  # up, and refusing the anonymous default user
            except redis.ConnectionError:
                assert server.poll() is None, server.stderr and server.stderr.read()
                time.sleep(0.05)
        else:
            raise AssertionError("redis-server did not start")
        probe.close()
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def _client(port: int, user: str) -> redis.Redis:
    password = {"producer": "producer-local-only", "tally": "tally-local-only"}[user]
    return redis.Redis(port=port, username=user, password=password)


def test_a_producer_can_only_append_usage_and_nobody_gets_in_without_a_password(
    acl_redis: int,
) -> None:
    producer = _client(acl_redis, "producer")
    assert producer.xadd(STREAM, {b"event": b"{}"})
    refused = {
        "read the stream": lambda: producer.xrange(STREAM),
        "read it as a group": lambda: producer.xreadgroup("metering", "p", {STREAM: ">"}),
        "its length": lambda: producer.xlen(STREAM),
        "append elsewhere": lambda: producer.xadd("tally:alerts", {b"event": b"{}"}),
        "trim": lambda: producer.xtrim(STREAM, maxlen=0),
        "delete": lambda: producer.delete(STREAM),
        "delete an entry": lambda: producer.xdel(STREAM, "0-1"),
        "make a group": lambda: producer.xgroup_create(STREAM, "mine", id="0"),
        "run a script": lambda: producer.eval("return 1", 0),
        "change the ACL": lambda: producer.acl_setuser("producer", enabled=True),
    }
    for what, attempt in refused.items():
        with pytest.raises(NoPermissionError):
            attempt()
            pytest.fail(f"the producer could {what}")
    with pytest.raises((AuthenticationError, ResponseError), match=r"NOAUTH|authenticated"):
        redis.Redis(port=acl_redis).xadd(STREAM, {b"event": b"{}"})
    with pytest.raises(AuthenticationError):
        redis.Redis(port=acl_redis, username="default", password="").ping()
    with pytest.raises(AuthenticationError):
        redis.Redis(port=acl_redis, username="producer", password="guess").ping()
    tally = _client(acl_redis, "tally")
    assert tally.xlen(STREAM) == 1
    with pytest.raises(NoPermissionError):
        tally.set("elsewhere", "x")
    producer.close()
    tally.close()


async def test_tally_migrates_and_meters_what_the_producer_published(
    acl_redis: int, settings: Settings
) -> None:
    acl = settings.model_copy(
        update={"redis_url": compose_tally_url(acl_redis), "stream": STREAM, "alerts_poll_s": 0.05}
    )
    engine = bootstrap.engine(urls_of(acl).database)
    try:
        await bootstrap.migrate(acl, urls_of(acl))
        await organizations.add(bootstrap.database(engine), "acme", "USD")
        producer_url = f"redis://producer:producer-local-only@127.0.0.1:{acl_redis}/0"
        async with UsageProducer(producer_url, source="crm-sync", stream=STREAM) as producer:
            await producer.api_request(
                "acme",
                oauth_client_id="c-42",
                method="GET",
                template_uri="/api/v2/users/{userId}",
                status=200,
                client_kind="integration",
                count=7,
                time=OCTOBER,
            )
            await producer.ai_usage(
                "acme", feature="voice_bot", quantity=Decimal(34), unit="minute", time=OCTOBER
            )
        consumer = await drain(acl)
        assert consumer.totals["metered"] == 2
        balances = balance_map(await read(engine, org_balances.balances, "acme", "2026-10"))
        assert balances["org/acme/2026-10/api_request/usage"] == 7
        tally = aioredis.from_url(compose_tally_url(acl_redis))
        try:
            (group,) = await tally.xinfo_groups(STREAM)
            assert group["pending"] == 0  # every entry acknowledged after its commit
            # the alerts' deliverer (Tally's XADD, FastStream's subscribers) as the same user
            async with bootstrap.alert_delivery(engine, acl, urls_of(acl)) as delivery:
                await delivery.stream.publish(cloud_event(ALERT))  # recorded nowhere: no POST
                report = await delivery.run(until_idle=True, poll_s=acl.alerts_poll_s)
            assert (report.published, report.attempts) == (0, 0)
            (webhooks,) = await tally.xinfo_groups(acl.alerts_stream)
            assert (webhooks["name"], webhooks["pending"], webhooks["lag"]) == (b"webhooks", 0, 0)
        finally:
            await tally.aclose()
    finally:
        await engine.dispose()
