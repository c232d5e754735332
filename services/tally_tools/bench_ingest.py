"""`tally bench ingest`: HTTP ingest's throughput, read against the machine.

In a scratch database and streams: a real `tally serve` (one worker, no event budget) takes
batches of ``batch`` events over HTTP (``concurrency`` requests in flight) into one stream;
then the same events are XADDed by a plain redis-py pipeline, ``batch`` at a time, into
another. Both rates come from the same run, so the ratio is what to compare across
machines and commits; the server's CPU seconds per 100,000 events count its own work.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, replace
from typing import Self

import httpx

from tally import bootstrap
from tally.adapters import embedded, redis_streams
from tally.adapters.postgres import databases, sources
from tally.config import ServiceUrls, Settings
from tally.domain.access import Role
from tally.service_layer import organizations
from tally.service_layer.api_keys import create_key
from tally_tools.loadgen import api_request_event
from tally_tools.resources import ProcessCpu, pid_cpu_seconds

SOURCE = "bench-http"
ORG = "bench-http-org"
BATCH_TYPE = "application/cloudevents-batch+json"


@dataclass(frozen=True)
class IngestResult:
    events: int
    batch: int
    concurrency: int
    seconds: float
    events_per_second: float
    xadd_events_per_second: float
    ratio: float  # HTTP ingest's rate over the plain pipeline's, same run
    server_cpu_s_per_100k: float
    client_cpu_s_per_100k: float
    stream_length: int  # every event accepted is in the stream: equals ``events``


class IngestBench:
    """A scratch database, a producer key, and `tally serve` on it; all gone on exit."""

    def __init__(self, settings: Settings, urls: ServiceUrls) -> None:
        self.base_settings, self.base_urls = settings, urls

    async def __aenter__(self) -> Self:
        database = await databases.create_scratch(self.base_urls.database, "tally_bench_ingest")
        self.urls = replace(self.base_urls, database=database)
        self.stream = f"tally:bench:{secrets.token_hex(4)}"
        self.settings = self.base_settings.model_copy(
            update={"stream": self.stream, "stream_shards": 1}
        )
        await bootstrap.migrate(self.settings, self.urls)
        engine = bootstrap.engine(database)
        try:
            await organizations.add(bootstrap.database(engine), ORG, "USD")
            await sources.add(engine, SOURCE, None)
            key, _ = await create_key(
                bootstrap.api_key_store(engine), Role.producer, None, "bench", None, SOURCE
            )
        finally:
            await engine.dispose()
        self.key = key.secret
        self.port = embedded.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")} | {
            "TALLY_DATABASE_URL": database,
            "TALLY_REDIS_URL": self.urls.redis,
            "TALLY_STREAM": self.stream,
            "TALLY_INGEST_EVENTS_PER_S": "0",
        }
        self.server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tally.entrypoints.cli", "serve", "--port", str(self.port),
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        async with httpx.AsyncClient(base_url=self.base) as client:
            while True:
                if self.server.returncode is not None:
                    raise RuntimeError("tally serve exited before it listened")
                try:
                    if (await client.get("/v1/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.server.returncode is None:
            self.server.send_signal(signal.SIGTERM)
            await self.server.wait()
        client = redis_streams.connect(self.urls.redis)
        try:
            for key in (self.stream, f"{self.stream}:xadd"):
                await client.delete(key)
        finally:
            await client.aclose()
        await databases.drop(self.urls.database)

    async def run(self, events: int, batch: int, concurrency: int) -> IngestResult:
        values = [
            api_request_event(f"e{n}", SOURCE, ORG, "2026-10-15T12:00:00Z") for n in range(events)
        ]
        bodies = [
            b"[" + b",".join(values[start : start + batch]) + b"]"
            for start in range(0, events, batch)
        ]
        headers = {"authorization": f"Bearer {self.key}", "content-type": BATCH_TYPE}
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

        async def sender(client: httpx.AsyncClient) -> None:
            while not queue.empty():
                body = queue.get_nowait()
                answer = await client.post("/v1/events", content=body, headers=headers)
                if answer.status_code != 202:
                    raise RuntimeError(f"POST /v1/events: {answer.status_code} {answer.text}")

        assert self.server.pid is not None
        server_cpu = pid_cpu_seconds(self.server.pid)
        client_cpu = ProcessCpu()
        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=self.base, limits=limits, timeout=60) as client:
            await asyncio.gather(*(sender(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        server_seconds = pid_cpu_seconds(self.server.pid) - server_cpu
        client_seconds = client_cpu.seconds()
        xadd_seconds = await self._xadd(values, batch)
        redis = redis_streams.connect(self.urls.redis)
        try:
            length = int(await redis.xlen(self.stream))
        finally:
            await redis.aclose()
        rate = events / seconds
        xadd_rate = events / xadd_seconds
        return IngestResult(
            events=events,
            batch=batch,
            concurrency=concurrency,
            seconds=round(seconds, 3),
            events_per_second=round(rate, 1),
            xadd_events_per_second=round(xadd_rate, 1),
            ratio=round(rate / xadd_rate, 3),
            server_cpu_s_per_100k=round(server_seconds * 100_000 / events, 3),
            client_cpu_s_per_100k=round(client_seconds * 100_000 / events, 3),
            stream_length=length,
        )

    async def _xadd(self, values: list[bytes], batch: int) -> float:
        """The plain pipeline: the same events, XADDed ``batch`` at a time (seconds)."""
        client = redis_streams.connect(self.urls.redis)
        key = f"{self.stream}:xadd"
        try:
            started = time.perf_counter()
            for start in range(0, len(values), batch):
                pipe = client.pipeline(transaction=False)
                for value in values[start : start + batch]:
                    pipe.xadd(key, {b"event": value})
                await pipe.execute()
            return time.perf_counter() - started
        finally:
            await client.aclose()
