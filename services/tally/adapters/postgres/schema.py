"""``tally migrate``: the Alembic upgrade, the roles' grants, the bundled rate cards."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres import privileges
from tally.adapters.postgres.connection import async_url, raw_transaction
from tally.adapters.postgres.databases import dsn
from tally.adapters.postgres.privileges import READER as READER  # the roles it grants
from tally.adapters.postgres.privileges import WRITER as WRITER
from tally.adapters.ratecard_files import bundled_cards
from tally.domain.ratecard import RateCard

if TYPE_CHECKING:
    from alembic.config import Config


def migrations_folder() -> Path:
    """The Alembic scripts: ``tally/migrations`` in a built wheel (hatch force-includes the
    repo's ``migrations/`` there), else the ``migrations/`` of the source checkout."""
    packaged = Path(str(resources.files("tally"))) / "migrations"
    if (packaged / "env.py").is_file():
        return packaged
    for folder in Path(__file__).resolve().parents:
        candidate = folder / "migrations"
        if (candidate / "env.py").is_file() and (candidate / "versions").is_dir():
            return candidate
    raise FileNotFoundError("the Alembic migrations are neither in the package nor the checkout")


MIGRATIONS = migrations_folder()


class RateCardChanged(RuntimeError):
    pass


def alembic_config(url: str) -> Config:
    from alembic.config import Config  # Alembic (~1 s to import) only when migrating

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return config


async def upgrade(url: str) -> None:
    """Upgrade to the newest revision (in a thread: Alembic's env runs its own event loop)."""
    from alembic import command  # only when migrating: every other command starts faster

    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")


async def grant(url: str, passwords: Mapping[str, str | None]) -> None:
    """After the upgrade, as the owner: the roles and their grants on every table."""
    conn = await asyncpg.connect(dsn(url))
    try:
        await privileges.apply(conn, passwords)
    finally:
        await conn.close()


async def load_rate_cards(engine: AsyncEngine, cards: list[RateCard] | None = None) -> list[str]:
    """Insert cards not yet loaded; a published version whose content changed is refused."""
    loaded = []
    async with raw_transaction(engine) as conn:
        for card in cards if cards is not None else bundled_cards():
            body = card.model_dump_json()
            inserted = await conn.fetchval(
                """INSERT INTO rate_card (version, effective_from, body)
                   VALUES ($1, $2, $3::jsonb) ON CONFLICT (version) DO NOTHING
                   RETURNING version""",
                card.version,
                card.effective_from,
                body,
            )
            if inserted:
                loaded.append(card.version)
                continue
            stored = await conn.fetchval(
                "SELECT body::text FROM rate_card WHERE version = $1", card.version
            )
            if RateCard.model_validate_json(stored) != card:
                raise RateCardChanged(
                    f"rate card {card.version} differs from the one already loaded: "
                    "a published card is never edited; add a new version with a later "
                    "effective_from"
                )
    return loaded
