"""Settings from the environment (prefix ``TALLY_``); one object, read once per process."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="postgresql+asyncpg://… URL; unset: an embedded PostgreSQL in data_dir.",
    )
    redis_url: str | None = Field(
        default=None, description="redis://… URL; unset: an embedded Redis in data_dir."
    )
    data_dir: Path = Field(
        default=Path(".tally"), description="Where the embedded servers keep their data."
    )
    stream: str = Field(default="tally:usage", description="Stream key the events arrive on.")
    group: str = Field(default="metering", description="Consumer group of the metering consumer.")
    consumer_name: str | None = Field(
        default=None, description="Name in the group; unset: hostname-pid."
    )
    batch_size: int = Field(
        default=10_000, ge=1, description="Entries per XREADGROUP and per transaction."
    )
    block_ms: int = Field(default=200, ge=1, description="XREADGROUP block time.")
    claim_idle_ms: int = Field(
        default=30_000, ge=1, description="Pending entries idle this long are claimed."
    )
    max_event_bytes: int = Field(
        default=65_536, ge=256, description="Larger stream entries are dead-lettered."
    )
    max_future_skew_s: int = Field(
        default=300, ge=0, description="Events timed further ahead than this are dead-lettered."
    )
    require_known_sources: bool = Field(
        default=False,
        description="Dead-letter events whose source is not registered (`tally source add`) "
        "or may not bill their organization; off for the embedded demo, on in compose.",
    )

    close_grace_hours: float = Field(
        default=24,
        ge=0,
        le=24 * 366,
        description="A period closes this long after it ended (usage is reported late).",
    )
    close_chunk: int = Field(default=500, ge=1, description="Organizations closed per transaction.")

    @property
    def close_grace(self) -> timedelta:
        return timedelta(hours=self.close_grace_hours)

    @property
    def max_future_skew(self) -> timedelta:
        return timedelta(seconds=self.max_future_skew_s)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
