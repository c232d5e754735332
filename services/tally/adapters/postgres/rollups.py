"""The daily rollups (``api_usage_daily``, ``ai_usage_daily``): added to by the metering
transaction (as appended deltas, compacted into the daily rows later), recomputed from
``usage_event`` by verify and rebuild, read by the reports (daily rows plus deltas: their
queries are the read side's, ``reads.usage_reports``).

They are derived data. The events are the evidence (immutable, hash-chained), so the one
truth of a rollup is the query ``_API_TRUTH`` / ``_AI_TRUTH`` over ``usage_event``: verify
lists where a rollup differs from it, rebuild adds the difference. Rebuild only ever adds a
difference computed in one snapshot (both sides at once), so a consumer adding its batch
concurrently is neither lost nor counted twice: its events and its rollup increments
commit together, and are either both in the snapshot or both after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from tally.domain.rating import Rated
from tally.domain.rollups import ai_days, api_days

API_KEY = ("org", "day", "oauth_client_id", "template_uri", "method", "status", "billable")
AI_KEY = ("org", "period", "day", "feature")


async def add(conn: asyncpg.Connection, new_events: Iterable[Rated]) -> None:
    """Append a batch's new events, summed per key, to both rollups' deltas (COPY: no unique
    probe, no row lock; compaction folds them into the daily rows)."""
    events = list(new_events)
    if api := api_days(events):
        await conn.copy_records_to_table(
            API_USAGE.delta,
            columns=(*API_KEY, API_USAGE.counter),
            records=[(*key, n) for key, n in api.items()],
        )
    if ai := ai_days(events):
        await conn.copy_records_to_table(
            AI_USAGE.delta,
            columns=(*AI_KEY, AI_USAGE.counter),
            records=[(*key, q) for key, q in ai.items()],
        )


# What the rollups must hold, from the stored events ($1: one organization, or NULL: all):
# a voided event counts for nothing (its void appended the negative delta).
VOIDED = "EXISTS (SELECT 1 FROM event_void x WHERE x.source = v.source AND x.id = v.id)"
_API_TRUTH = f"""
SELECT org, (event_time AT TIME ZONE 'UTC')::date AS day,
       data ->> 'oauth_client_id' AS oauth_client_id, data ->> 'template_uri' AS template_uri,
       data ->> 'method' AS method, (data ->> 'status')::numeric::integer AS status,
       event_status = 'metered' AS billable, sum(quantity)::bigint AS amount
  FROM (SELECT org, event_time, status AS event_status, quantity,
               convert_from(raw, 'UTF8')::jsonb -> 'data' AS data
          FROM usage_event v
         WHERE type = 'api.request' AND status IN ('metered', 'non_billable')
           AND ($1::text IS NULL OR org = $1) AND NOT {VOIDED}) AS e
 GROUP BY 1, 2, 3, 4, 5, 6, 7"""
_AI_TRUTH = f"""
SELECT org, period, (event_time AT TIME ZONE 'UTC')::date AS day, feature,
       sum(quantity) AS amount
  FROM usage_event v
 WHERE meter = 'ai_token' AND feature IS NOT NULL AND ($1::text IS NULL OR org = $1)
   AND NOT {VOIDED}
 GROUP BY 1, 2, 3, 4"""


@dataclass(frozen=True)
class Fold:
    """A coarser table kept from a rollup's daily rows (fewer rows for a range to read):
    ``rows`` maps rows of the daily key (``{source}``) to rows of this table's key."""

    table: str
    key: tuple[str, ...]
    counter: str
    rows: str

    def of(self, source: str) -> str:
        """This table's rows from ``source``'s (a relation of the daily key and counter)."""
        key = ", ".join(self.key)
        return f"""SELECT {key}, sum({self.counter}) AS amount
                     FROM ({self.rows.format(source=source)}) AS f GROUP BY {key}"""

    def add_sql(self, source: str) -> str:
        """Add ``source``'s rows to this table, in key order (as compaction locks them)."""
        key = ", ".join(self.key)
        return f"""INSERT INTO {self.table} AS r ({key}, {self.counter})
                   {self.of(source)} ORDER BY {key}
                   ON CONFLICT ({key}) DO UPDATE
                   SET {self.counter} = r.{self.counter} + excluded.{self.counter}"""


@dataclass(frozen=True)
class Rollup:
    """One rollup: its daily table, the deltas not yet folded into it (None: a fold, kept
    by compaction alone), key, counter column, the truth it derives from (what
    ``truth_name`` says a difference is measured against) and its folds."""

    table: str
    delta: str | None
    key: tuple[str, ...]
    counter: str
    truth: str
    truth_name: str = "its events"
    folds: tuple[Fold, ...] = ()

    def rows_sql(self) -> str:
        """The rollup's rows as readers see them: the daily rows and the deltas (sum them
        per key); ``in_daily`` tells which."""
        columns = ", ".join((*self.key, self.counter))
        deltas = f" UNION ALL SELECT {columns}, false FROM {self.delta}" if self.delta else ""
        return f"(SELECT {columns}, true AS in_daily FROM {self.table}{deltas})"

    def compact_sql(self) -> str:
        """Move the deltas ($1: one organization's, or NULL: all) into the daily rows and
        the folds, in key order (two compactions lock them in the same order); counts the
        deltas moved. A delta another compaction is moving is skipped once that one
        commits: never folded twice."""
        key = ", ".join(self.key)
        folds = "".join(
            f", fold_{n} AS ({fold.add_sql('moved')} RETURNING 1)"
            for n, fold in enumerate(self.folds)
        )
        return f"""
            WITH moved AS (DELETE FROM {self.delta} WHERE $1::text IS NULL OR org = $1
                           RETURNING {key}, {self.counter}),
                 folded AS (INSERT INTO {self.table} AS r ({key}, {self.counter})
                            SELECT {key}, sum({self.counter}) FROM moved
                             GROUP BY {key} ORDER BY {key}
                            ON CONFLICT ({key}) DO UPDATE
                            SET {self.counter} = r.{self.counter} + excluded.{self.counter}
                            RETURNING 1){folds}
            SELECT count(*) FROM moved"""

    def checked_folds(self) -> tuple[Rollup, ...]:
        """Each fold as a rollup whose truth is this rollup's daily rows (verify, rebuild)."""
        daily = f"(SELECT * FROM {self.table} WHERE $1::text IS NULL OR org = $1)"
        named = f"its {self.table} rows"
        return tuple(
            Rollup(fold.table, None, fold.key, fold.counter, fold.of(daily), named)
            for fold in self.folds
        )

    def differences_sql(self) -> str:
        """Rows whose stored counter differs from the events' (missing rows count 0)."""
        key = ", ".join(self.key)
        return f"""
            WITH truth AS ({self.truth}),
                 stored AS (SELECT {key}, sum({self.counter}) AS amount,
                                   bool_or(in_daily) AS present
                              FROM {self.rows_sql()} AS r
                             WHERE $1::text IS NULL OR org = $1 GROUP BY {key})
            SELECT {key}, coalesce(t.amount, 0) AS expected, coalesce(s.amount, 0) AS stored,
                   coalesce(s.present, false) AS present
              FROM truth t FULL JOIN stored s USING ({key})
             WHERE coalesce(t.amount, 0) <> coalesce(s.amount, 0)"""

    def rebuild_sql(self) -> str:
        """Add each difference to the daily row: to its latest version when it exists (an
        UPDATE re-reads a row a concurrent compaction changed), else as a new row; counts
        the rows."""
        key = ", ".join(self.key)
        joined = " AND ".join(f"r.{column} = d.{column}" for column in self.key)
        return f"""
            WITH d AS ({self.differences_sql()}),
                 updated AS (UPDATE {self.table} r
                                SET {self.counter} = r.{self.counter} + d.expected - d.stored
                               FROM d WHERE d.present AND {joined} RETURNING 1),
                 inserted AS (INSERT INTO {self.table} AS r ({key}, {self.counter})
                              SELECT {key}, expected - stored FROM d WHERE NOT present
                               ORDER BY {key}
                              ON CONFLICT ({key}) DO UPDATE
                              SET {self.counter} = r.{self.counter} + excluded.{self.counter}
                              RETURNING 1)
            SELECT (SELECT count(*) FROM updated) + (SELECT count(*) FROM inserted)"""


# The report reads whole months and month-weeks here (``usage_spans``: migration 0014),
# the dashboard its days' billable requests: a few rows where the daily ones are 100,000s.
API_SPANS = Fold(
    "api_usage_span",
    ("org", "first_day", "last_day", *API_KEY[2:]),
    "requests",
    """SELECT s.org, p.first_day, p.last_day, s.oauth_client_id, s.template_uri, s.method,
              s.status, s.billable, s.requests
         FROM {source} AS s CROSS JOIN LATERAL usage_spans(s.day) AS p""",
)
API_BILLABLE_DAYS = Fold(
    "api_billable_daily",
    ("org", "day"),
    "requests",
    "SELECT org, day, requests FROM {source} AS s WHERE billable",
)
API_USAGE = Rollup(
    "api_usage_daily", "api_usage_delta", API_KEY, "requests", _API_TRUTH,
    folds=(API_SPANS, API_BILLABLE_DAYS),
)  # fmt: skip
AI_USAGE = Rollup("ai_usage_daily", "ai_usage_delta", AI_KEY, "quantity", _AI_TRUTH)
ROLLUPS = (API_USAGE, AI_USAGE)
# What verify compares and rebuild restores, in this order: the daily rows from the events,
# then the folds from the daily rows.
CHECKED = (*ROLLUPS, *(fold for rollup in ROLLUPS for fold in rollup.checked_folds()))


@dataclass(frozen=True)
class Difference:
    table: str
    key: dict[str, object]
    expected: Decimal
    stored: Decimal

    truth_name: str = "its events"

    def describe(self) -> str:
        where = ", ".join(f"{name} {value}" for name, value in self.key.items())
        return (
            f"{self.table} ({where}) holds {self.stored},"
            f" {self.truth_name} add up to {self.expected}"
        )


async def differences(conn: asyncpg.Connection, org: str | None = None) -> list[Difference]:
    """Where the rollups differ from what the stored events add up to (one snapshot per
    table: call within a repeatable-read transaction to compare both at one instant)."""
    found = []
    for rollup in CHECKED:
        order = ", ".join(str(n) for n in range(1, len(rollup.key) + 1))
        for row in await conn.fetch(f"{rollup.differences_sql()} ORDER BY {order}", org):
            found.append(
                Difference(
                    rollup.table,
                    {column: row[column] for column in rollup.key},
                    Decimal(row["expected"]),
                    Decimal(row["stored"]),
                    rollup.truth_name,
                )
            )
    return found


async def organizations(conn: asyncpg.Connection) -> list[str]:
    """Every organization, in name order (what a rebuild of all goes through)."""
    return [row["name"] for row in await conn.fetch("SELECT name FROM organization ORDER BY 1")]


async def compact(conn: asyncpg.Connection, org: str | None = None) -> int:
    """Fold the deltas (one organization's, or all) into the daily rows; returns how many
    deltas were moved. Keeps reads fast: run it periodically (``tally rollups compact``)."""
    moved = 0
    for rollup in ROLLUPS:
        moved += await conn.fetchval(rollup.compact_sql(), org)
    return moved


async def rebuild(conn: asyncpg.Connection, org: str) -> int:
    """Compact one organization's rollups, then bring the daily rows back to what its events
    add up to and the folds to what the daily rows do; returns how many rows changed (0 when
    they were right)."""
    await compact(conn, org)
    changed = 0
    for rollup in CHECKED:
        changed += await conn.fetchval(rollup.rebuild_sql(), org)
    return changed
