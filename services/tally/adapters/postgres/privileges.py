"""The roles the services act as and what each may do: the last step of ``tally migrate``.

Invariants (PostgreSQL enforces them, whatever the service's code does):
- ``tally_writer`` (the consumer, the close, the CLI's writing commands) owns nothing and
  is no superuser, so it can never ALTER a table, DISABLE TRIGGER, TRUNCATE or set
  ``session_replication_role``; it may SELECT every table, INSERT into every table but
  ``WRITER_READ_ONLY``, UPDATE only the columns in ``WRITER_UPDATES`` and DELETE only
  from ``WRITER_DELETES`` (derived rows that compaction moves, never evidence);
- ``tally_reader`` (reports, the read-only API) may only SELECT, and in the tables of
  ``READER_COLUMNS`` only those columns (a webhook's signing secret stays out of reach);
  its one way to write is to EXECUTE the SECURITY DEFINER functions of
  ``READER_FUNCTIONS``, which open and revoke the pages' sessions (migration 0015) and do
  nothing else (no other role may call them);
- the grants cover every table of the schema, recomputed from this policy on each run:
  a table a later migration adds gets SELECT and INSERT for the writer and SELECT for the
  reader with no edit here; add it to ``WRITER_UPDATES`` only when a row must change
  (and then only those columns), to ``WRITER_READ_ONLY`` when the services only read it.

Roles are cluster-wide: creating them is idempotent and safe when many databases migrate
at once. They are NOLOGIN unless a password is configured.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

WRITER = "tally_writer"
READER = "tally_reader"
MIGRATION_LOCK = 7_461_234_001  # pg_advisory_lock key shared by every `tally migrate`

# Where the writer may change a row: only these columns, and only in these tables.
WRITER_UPDATES: Mapping[str, tuple[str, ...]] = {
    "ledger_lane": ("seq", "head_hash"),  # a lane's head moves with each posting
    "delivery_lane": ("seq", "head_hash"),  # so does a delivery-tally lane's
    "meter_total": ("quantity",),  # running AI quantity (ON CONFLICT DO UPDATE; only grows)
    "usage_total": ("used",),  # running committed usage per meter (likewise)
    "dead_letter": ("replayed_at", "replay_outcome"),  # a replay is recorded
    "invoice_counter": ("last",),  # the next invoice numbers are taken
    "api_key": ("revoked_at",),  # a key is revoked (once: a trigger refuses the rest)
    # per-account rollups of the posted lines grow with each posting (only grow: trigger)
    "account_day": ("debits", "credits", "lines", "first_entry", "last_entry"),
    "account_period": ("debits", "credits", "lines"),
    # Derived rollups (the report's and the dashboard's read side): metering adds each
    # batch's new events (upsert), `tally rollups rebuild` adds back what they miss. They
    # are not evidence: `tally ledger verify` recomputes them from the immutable,
    # hash-chained events and names any difference.
    "api_usage_daily": ("requests",),
    "ai_usage_daily": ("quantity",),
    "api_usage_span": ("requests",),  # compaction folds into the spans too
    "api_billable_daily": ("requests",),
}
# Where the writer may DELETE: the rollup deltas, which `tally rollups compact` moves into
# the daily rows in one transaction (verify would name a delta lost or folded twice).
WRITER_DELETES = frozenset({"api_usage_delta", "ai_usage_delta"})
# Where the reader may SELECT only some columns: the rest are secrets.
READER_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "webhook": ("version", "id", "url", "enabled", "created_at"),  # not ``secret``
}
# Tables the services read but never add to: migrate fills them.
WRITER_READ_ONLY = frozenset(
    {
        "alembic_version",
        "rate_card",
        "ledger_lane",
        "delivery_lane",
        "invoice_counter",
        "ui_session",  # only READER_FUNCTIONS write it
        "cursor_key",  # the API's cursors' signing key
        "seal_key",  # who signs seals: only the owner publishes a key (`tally seal keygen`)
    }
)
# The functions the reader may call: the pages' sessions, opened and revoked.
READER_FUNCTIONS = ("ui_session_open(text, text)", "ui_session_revoke(text)")

CREATE_ROLE = """DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
        CREATE ROLE {role} NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database's migrate created it at the same moment
END $$"""


async def apply(conn: asyncpg.Connection, passwords: Mapping[str, str | None]) -> None:
    """Create the roles when missing, then grant exactly the policy (idempotent)."""
    for role in (WRITER, READER):
        await conn.execute(CREATE_ROLE.format(role=role))
        if password := passwords.get(role):
            statement = await conn.fetchval(
                "SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)",
                role,
                password,
            )
            await conn.execute(statement)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        schema = await conn.fetchval("SELECT quote_ident(current_schema())")
        tables = {
            row["relname"]
            for row in await conn.fetch(
                """SELECT c.relname FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"""
            )
        }
        functions = {
            function
            for function in READER_FUNCTIONS
            if await conn.fetchval("SELECT to_regprocedure($1)", f"{schema}.{function}")
        }
        await conn.execute(_grants(schema, tables, functions))


def _grants(schema: str, tables: set[str], functions: set[str]) -> str:
    """The policy for the ``tables`` and ``READER_FUNCTIONS`` this schema has (an older
    revision's schema lacks the later ones)."""
    both = f"{WRITER}, {READER}"
    statements = [
        f"GRANT USAGE ON SCHEMA {schema} TO {both}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {both}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {both}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {both}",
        f"GRANT INSERT ON ALL TABLES IN SCHEMA {schema} TO {WRITER}",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {WRITER}",
    ]
    for table in sorted(tables & WRITER_READ_ONLY):
        statements.append(f"REVOKE INSERT ON {schema}.{table} FROM {WRITER}")
    for table, columns in sorted(WRITER_UPDATES.items()):
        if table in tables:
            statements.append(
                f"GRANT UPDATE ({', '.join(columns)}) ON {schema}.{table} TO {WRITER}"
            )
    for table in sorted(tables & WRITER_DELETES):
        statements.append(f"GRANT DELETE ON {schema}.{table} TO {WRITER}")
    for table, columns in sorted(READER_COLUMNS.items()):
        if table in tables:
            statements.append(f"REVOKE SELECT ON {schema}.{table} FROM {READER}")
            statements.append(
                f"GRANT SELECT ({', '.join(columns)}) ON {schema}.{table} TO {READER}"
            )
    for function in sorted(functions):
        statements.append(f"GRANT EXECUTE ON FUNCTION {schema}.{function} TO {READER}")
    return ";\n".join(statements)
