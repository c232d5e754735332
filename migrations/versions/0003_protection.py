"""Protection: delivery tallies in a hash chain, an invoice counter that only grows.

The invariants this revision adds, in PostgreSQL itself:
- each committed metering batch appends one ``delivery_tally`` row (per stream: events,
  duplicates, conflicts and dead letters it stored, dead letters its replay closed) to
  one of 16 lanes of a hash chain, whose head is in ``delivery_lane``; tally rows refuse
  UPDATE, DELETE and TRUNCATE, so the per-stream sums are what the tables must hold
  (``tally ledger verify`` re-sums them and checks the chain);
- the invoice counter never goes back, so a deleted last invoice leaves a gap to find.

Ledgers that already hold deliveries get one opening tally per stream (lane 1), so
verify starts from what is there.

The roles and grants (``tally_writer``, ``tally_reader``) are not a revision: ``tally
migrate`` applies them to every table after each upgrade
(``tally.adapters.postgres.privileges``).

Revision ID: 0003
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from alembic import op
from sqlalchemy import text

from tally.adapters.postgres.ddl import refuse_changes, refuse_truncate, run_script
from tally.domain.deliveries import DeliveryCounts, tally_hash
from tally.domain.ledger import GENESIS_HASH

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LANES = 16

UPGRADE = f"""
CREATE TABLE delivery_lane (
    lane      int PRIMARY KEY,
    seq       bigint NOT NULL DEFAULT 0,
    head_hash bytea NOT NULL DEFAULT '\\x{"00" * 32}'
);
INSERT INTO delivery_lane (lane) SELECT generate_series(1, {LANES});

CREATE TABLE delivery_tally (
    lane         int NOT NULL REFERENCES delivery_lane (lane),
    seq          bigint NOT NULL,
    stream       text NOT NULL,
    events       bigint NOT NULL CHECK (events >= 0),
    duplicates   bigint NOT NULL CHECK (duplicates >= 0),
    conflicts    bigint NOT NULL CHECK (conflicts >= 0),
    dead_letters bigint NOT NULL CHECK (dead_letters >= 0),
    replayed     bigint NOT NULL CHECK (replayed >= 0),
    recorded_at  timestamptz NOT NULL,
    prev_hash    bytea NOT NULL,
    hash         bytea NOT NULL,
    PRIMARY KEY (lane, seq)
);

CREATE FUNCTION tally_counter_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.last < OLD.last THEN
        RAISE EXCEPTION 'ledger: the invoice counter never goes back (% to %)', OLD.last, NEW.last
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER invoice_counter_grows BEFORE UPDATE ON invoice_counter
    FOR EACH ROW EXECUTE FUNCTION tally_counter_grows();
"""

EXISTING = """
SELECT stream, sum(events) AS events, sum(duplicates) AS duplicates,
       sum(conflicts) AS conflicts, sum(dead_letters) AS dead_letters,
       sum(replayed) AS replayed
  FROM (SELECT stream, 1 AS events, 0 AS duplicates, 0 AS conflicts, 0 AS dead_letters,
               0 AS replayed FROM usage_event
        UNION ALL SELECT stream, 0, 1, 0, 0, 0 FROM duplicate_delivery
        UNION ALL SELECT stream, 0, 0, 1, 0, 0 FROM event_conflict
        UNION ALL SELECT stream, 0, 0, 0, 1, (replayed_at IS NOT NULL)::int FROM dead_letter) d
 GROUP BY stream ORDER BY stream"""


def upgrade() -> None:
    run_script(UPGRADE)
    refuse_changes("delivery_tally")
    refuse_truncate("delivery_lane")
    _opening_tallies()


def _opening_tallies() -> None:
    """What the ledger already holds, one tally per stream, chained on lane 1."""
    bind = op.get_bind()
    head, seq, now = GENESIS_HASH, 0, datetime.now(UTC)
    for row in bind.execute(text(EXISTING)).mappings():
        seq += 1
        counts = DeliveryCounts(
            int(row["events"]),
            int(row["duplicates"]),
            int(row["conflicts"]),
            int(row["dead_letters"]),
            int(row["replayed"]),
        )
        digest = tally_hash(head, 1, seq, row["stream"], now, counts)
        bind.execute(
            text(
                """INSERT INTO delivery_tally VALUES (1, :seq, :stream, :events, :duplicates,
                       :conflicts, :dead_letters, :replayed, :at, :prev, :hash)"""
            ),
            {"seq": seq, "stream": row["stream"], "at": now, "prev": head, "hash": digest}
            | asdict(counts),
        )
        head = digest
    if seq:
        bind.execute(
            text("UPDATE delivery_lane SET seq = :seq, head_hash = :head WHERE lane = 1"),
            {"seq": seq, "head": head},
        )


def downgrade() -> None:
    for table in ("delivery_tally", "delivery_lane"):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    op.execute("DROP FUNCTION IF EXISTS tally_counter_grows() CASCADE")
