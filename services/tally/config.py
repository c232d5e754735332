"""Settings from the environment (prefix ``TALLY_``); one object, read once per process."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tally.domain.events import DEFAULT_STREAM
from tally.domain.invoicing import CLOSE_CHUNK
from tally.domain.shards import shard_keys

MAX_BATCH_SIZE = 10_000
MAX_BATCH_BYTES = 16 * 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="postgresql+asyncpg://… URL; unset: an embedded PostgreSQL in data_dir.",
    )
    database_role: str | None = Field(
        default="tally_writer",
        description="Role every service connection acts as (SET ROLE at connect) when the "
        "URL logs in as the owner; empty: the login role itself. `tally migrate` always "
        "acts as the login role, which must own the schema.",
    )
    writer_password: SecretStr | None = Field(
        default=None,
        description="Set: `tally migrate` lets tally_writer log in with this password.",
    )
    reader_password: SecretStr | None = Field(
        default=None,
        description="Set: `tally migrate` lets tally_reader log in with this password.",
    )
    seal_key_file: Path | None = Field(
        default=None,
        description="The Ed25519 private key (PKCS#8 PEM) that signs month seals: "
        "`tally seal keygen` writes it here, the close and `tally seal sign` read it.",
    )
    seal_private_key: SecretStr | None = Field(
        default=None,
        description="The same key as PEM text, from a secret the deployment provides; "
        "wins over seal_key_file.",
    )
    redis_url: str | None = Field(
        default=None, description="redis://… URL; unset: an embedded Redis in data_dir."
    )
    data_dir: Path = Field(
        default=Path(".tally"), description="Where the embedded servers keep their data."
    )
    stream: str = Field(default=DEFAULT_STREAM, description="Stream key the events arrive on.")
    stream_shards: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Shards of the usage stream: 1, the single key <stream>; N > 1, the keys "
        "<stream>:{0} … <stream>:{N-1} (Redis Cluster hash tags), an event on shard "
        "sha256(subject)[:8] % N. Producers and consumers must agree on it.",
    )
    producer_wait_replicas: int | None = Field(
        default=None,
        ge=0,
        description="After each pipelined batch, `tally emit`/`produce` wait (WAIT) until "
        "this many replicas have it; unset: 1 on a Redis Cluster whose shard's master has a "
        "replica, else 0 (so a write acknowledged to the producer survives a failover).",
    )
    producer_wait_timeout_ms: int = Field(
        default=2000,
        ge=1,
        description="How long a producer's WAIT may take; a batch not replicated by then is "
        "sent again (a duplicate of its events is counted once).",
    )
    group: str = Field(default="metering", description="Consumer group of the metering consumer.")
    consumer_name: str | None = Field(
        default=None, description="Name in the group; unset: hostname-pid."
    )
    batch_size: int = Field(
        default=10_000,
        ge=1,
        le=MAX_BATCH_SIZE,
        description="Entries per XREADGROUP and per transaction (at most 10,000: the consumer's "
        "peak memory is measured at the largest batch, and larger ones were no faster).",
    )
    block_ms: int = Field(default=200, ge=1, description="XREADGROUP block time.")
    rating_process: bool = Field(
        default=False,
        description="Parse and rate batches in a worker process beside the consumer, so the "
        "next batch is rated on another core while this one commits. Pays only with cores to "
        "spare: on 2 cores shared with PostgreSQL and Redis it drained no faster, cost about "
        "1.5 s more CPU per 100,000 events (the hand-off) and about 80 MB more memory.",
    )
    claim_idle_ms: int = Field(
        default=30_000, ge=1, description="Pending entries idle this long are claimed."
    )
    batch_max_bytes: int = Field(
        default=MAX_BATCH_BYTES,
        ge=1024,
        le=MAX_BATCH_BYTES,
        description="Bytes per batch (field names and values; an oversized entry counts as "
        "the bytes kept of it). A batch is cut at this size or at batch_size entries.",
    )
    max_event_bytes: int = Field(
        default=65_536,
        ge=256,
        description="Larger stream entries are dead-lettered with their length, SHA-256 and "
        "first max_event_bytes bytes.",
    )
    stream_retention: str | None = Field(
        default=None,
        description="Trim the stream automatically, keeping this much: a duration such as "
        "'7d', '12h', '30m' or a count of entries such as '1000000'. Only entries every "
        "group has acknowledged and PostgreSQL holds are ever trimmed. Unset: never trim.",
    )
    trim_interval_s: float = Field(
        default=60, gt=0, description="How often a consumer with a retention trims."
    )
    rollup_compact_interval_s: float = Field(
        default=60,
        ge=0,
        description="How often a consumer folds the rollup deltas into the daily rows "
        "(reports read both; fewer deltas, faster reports); 0: never (cron "
        "`tally rollups compact` instead).",
    )
    give_up_after_s: float = Field(
        default=60,
        gt=0,
        description="With --until-idle: exit non-zero when PostgreSQL or Redis stays "
        "unreachable this long (a long-running consumer waits for them forever).",
    )
    max_future_skew_s: int = Field(
        default=300, ge=0, description="Events timed further ahead than this are dead-lettered."
    )
    require_known_sources: bool = Field(
        default=False,
        description="Dead-letter events whose source is not registered (`tally source add`) "
        "or may not bill their organization; off for the embedded demo, on in compose.",
    )

    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Set: a consumer (and `tally alerts deliver`) exposes its Prometheus "
        "metrics at http://<metrics_host>:<port>/metrics (`tally serve` has them at /metrics).",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the metrics endpoint listens on (0.0.0.0 in a container).",
    )
    metrics_interval_s: float = Field(
        default=15.0,
        gt=0,
        description="How often a consumer exposing metrics reads the stream's lag, pending "
        "entries and the dead-letter store's size for its gauges.",
    )
    metrics_pushgateway: str | None = Field(
        default=None,
        description="host:port of a Prometheus Pushgateway: `tally close`, a job that exits, "
        "pushes its metrics there when it ends (job `tally-close`); unset or empty: no push.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`json`: one JSON object per log line (level, time, message, logger, the "
        "batch or request and trace id, counts); `text`: readable lines.",
    )

    api_host: str = Field(default="127.0.0.1", description="Address `tally serve` listens on.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port of `tally serve`.")
    api_workers: int = Field(default=1, ge=1, description="Worker processes of `tally serve`.")
    api_database_url: str | None = Field(
        default=None,
        description="The HTTP API's database URL, logging in as tally_reader; unset: the "
        "ledger's URL with SET ROLE tally_reader at connect. Either way it can only SELECT.",
    )

    ingest_max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="The largest request body `POST /v1/events` reads; larger: 413.",
    )
    ingest_max_batch: int = Field(
        default=1000, ge=1, le=10_000, description="Events in one batch-mode request, at most."
    )
    ingest_events_per_s: float = Field(
        default=20_000,
        ge=0,
        description="Events a producer key may send per second over HTTP, on average (per API "
        "process); 0: no limit. Beyond it: 429 with Retry-After.",
    )
    ingest_burst: int = Field(
        default=40_000,
        ge=1,
        description="Events a producer key may send at once before the per-second limit applies.",
    )

    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^/?#]+/?$",
        description="Where browsers reach `tally serve` (https://tally.example.com): the one "
        "origin the pages' forms are accepted from, and Secure cookies when https. Unset: "
        "the request's own scheme and Host.",
    )
    trusted_proxies: str = Field(
        default="",
        description="Addresses of the reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed (comma-separated): only the proxies' own addresses, "
        "never '*' (refused: any client could then choose its address); empty: none.",
    )
    auth_failures_per_key: int = Field(
        default=10,
        ge=0,
        description="Failed authentications of one key id (API or sign-in) in the window "
        "before it is refused with 429 until the window has room; 0: no limit.",
    )
    auth_failures_per_address: int = Field(
        default=30,
        ge=0,
        description="Failed authentications from one client address in the window before "
        "it is refused with 429; 0: no limit.",
    )
    auth_failure_window_s: float = Field(
        default=300, gt=0, description="The sliding window of the failed-authentication limits."
    )

    seller_name: str = Field(
        default="Tally", description="The seller on invoice documents (the pages' invoices)."
    )
    seller_address: str = Field(
        default="", description="The seller's address on invoice documents; lines split by '|'."
    )
    seller_tax_id: str = Field(
        default="", description="The seller's tax or VAT number on invoice documents (if any)."
    )
    seller_email: str = Field(
        default="", description="Where customers write about an invoice (printed on it)."
    )
    payment_days: int = Field(
        default=30, ge=0, le=365, description="An invoice is due this many days after issue."
    )

    close_grace_hours: float = Field(
        default=24,
        ge=0,
        le=24 * 366,
        description="A period closes this long after it ended (usage is reported late).",
    )
    close_chunk: int = Field(
        default=CLOSE_CHUNK, ge=1, description="Organizations closed per transaction."
    )
    alerts_stream: str = Field(
        default="tally:alerts", description="Stream threshold alerts are published on."
    )
    alerts_poll_s: float = Field(
        default=1.0, gt=0, description="How often `tally alerts deliver` looks for work."
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, description="How long a webhook has to answer one POST."
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, le=100, description="POSTs of one alert to one webhook before giving up."
    )
    webhook_retry_first_s: float = Field(
        default=30.0, gt=0, description="Wait before the first retry; doubles each time."
    )
    webhook_retry_max_s: float = Field(
        default=3600.0, gt=0, description="The longest wait between two attempts."
    )

    @model_validator(mode="after")
    def _a_batch_fits_a_burst(self) -> Settings:
        if self.ingest_events_per_s > 0 and self.ingest_burst < self.ingest_max_batch:
            raise ValueError(
                f"TALLY_INGEST_BURST ({self.ingest_burst}) is below TALLY_INGEST_MAX_BATCH "
                f"({self.ingest_max_batch}): a full batch would be refused forever"
            )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _no_wildcard_proxy(cls, value: str) -> str:
        if any(part.strip() == "*" for part in value.split(",")):
            raise ValueError(
                "TALLY_TRUSTED_PROXIES='*' would believe anyone's X-Forwarded-For: any "
                "client could choose its address (and its failed-authentication budget). "
                "List only the reverse proxies' own addresses, comma-separated"
            )
        return value

    @field_validator("stream_retention")
    @classmethod
    def _retention_is_readable(cls, value: str | None) -> str | None:
        if value is not None:
            parse_retention(value)
        return value

    @property
    def stream_keys(self) -> list[str]:
        """The usage stream's keys, one per shard, in shard order."""
        return shard_keys(self.stream, self.stream_shards)

    @property
    def retention(self) -> timedelta | int | None:
        return None if self.stream_retention is None else parse_retention(self.stream_retention)

    @property
    def close_grace(self) -> timedelta:
        return timedelta(hours=self.close_grace_hours)

    @property
    def max_future_skew(self) -> timedelta:
        return timedelta(seconds=self.max_future_skew_s)


RETENTION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class ServiceUrls:
    """Where the services are (``tally.bootstrap.service_urls`` finds them)."""

    database: str  # postgresql+asyncpg://…
    redis: str  # redis://… or unix://…
    embedded: bool


def parse_retention(text: str) -> timedelta | int:
    """``7d``, ``12h``, ``30m``, ``90s``: keep that long; a plain number: keep that many."""
    found = re.fullmatch(r"\s*([0-9]+)\s*([smhd]?)\s*", text)
    if not found:
        raise ValueError(
            f"retention {text!r}: a duration like '7d', '12h', '30m', '90s', or a count "
            "of entries like '1000000'"
        )
    number, unit = int(found[1]), found[2]
    return timedelta(seconds=number * RETENTION_UNITS[unit]) if unit else number


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
