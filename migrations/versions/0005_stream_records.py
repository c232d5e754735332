"""What happened to the stream itself: trims, entries lost before any read, truncated rejects.

The invariants kept here:
- a trim Tally made (`stream_trim`) and an incident it detected (`stream_incident`: entries
  removed from the stream by someone else before the group read them) are records, never
  rewritten or removed;
- an incident is recorded once (its id in the stream's incident log is the key);
- a dead letter of an oversized entry keeps the whole entry's length and SHA-256 beside the
  first bytes it keeps, and those never change either.

Revision ID: 0005
"""

from __future__ import annotations

from tally.adapters.postgres.ddl import refuse_changes, run_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE stream_incident (
    stream       text NOT NULL,
    incident_id  text NOT NULL,
    group_name   text NOT NULL,
    lost         bigint NOT NULL CHECK (lost > 0),
    after_id     text NOT NULL,
    before_id    text NOT NULL,
    detected_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, incident_id)
);

CREATE TABLE stream_trim (
    id         bigserial PRIMARY KEY,
    stream     text NOT NULL,
    min_id     text NOT NULL,
    removed    bigint NOT NULL CHECK (removed >= 0),
    trimmed_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE dead_letter ADD COLUMN original_length bigint CHECK (original_length > 0),
                        ADD COLUMN original_sha256 text CHECK (original_sha256 ~ '^[0-9a-f]{64}$');

CREATE OR REPLACE FUNCTION tally_dead_letter_resolve_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (NEW.id, NEW.stream, NEW.stream_id, NEW.raw, NEW.reason, NEW.code,
                            NEW.received_at, NEW.original_length, NEW.original_sha256)
        IS DISTINCT FROM (OLD.id, OLD.stream, OLD.stream_id, OLD.raw, OLD.reason, OLD.code,
                          OLD.received_at, OLD.original_length, OLD.original_sha256)
    THEN
    RAISE EXCEPTION 'ledger: a dead letter keeps its bytes and reason; only replays are recorded'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
"""

DOWNGRADE = """
CREATE OR REPLACE FUNCTION tally_dead_letter_resolve_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (NEW.id, NEW.stream, NEW.stream_id, NEW.raw, NEW.reason, NEW.code,
                            NEW.received_at)
        IS DISTINCT FROM (OLD.id, OLD.stream, OLD.stream_id, OLD.raw, OLD.reason, OLD.code,
                          OLD.received_at)
    THEN
    RAISE EXCEPTION 'ledger: a dead letter keeps its bytes and reason; only replays are recorded'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
ALTER TABLE dead_letter DROP COLUMN original_length, DROP COLUMN original_sha256;
DROP TABLE stream_trim;
DROP TABLE stream_incident;
"""


def upgrade() -> None:
    run_script(UPGRADE)
    for table in ("stream_incident", "stream_trim"):
        refuse_changes(table)


def downgrade() -> None:
    run_script(DOWNGRADE)
